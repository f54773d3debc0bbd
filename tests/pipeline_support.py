"""Helpers shared by the Airflow pipeline's integration and e2e tests.

`write_sample_dbt_project` writes a small real dbt project (one source, one mart,
one data test) that the DAG can build through `SMART_ACCESS_DBT_PROJECT_DIR`; the
data test `assert_no_failed_events` fails as soon as raw holds a `fail` event, so a
test makes the pipeline fail by inserting one.
"""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

MART = "fct_access_events_by_type"
FAILING_TEST = "assert_no_failed_events"

_FILES = {
    "dbt_project.yml": """
name: pipeline_sample
version: "1.0"
profile: pipeline_sample
config-version: 2
model-paths: ["models"]
test-paths: ["tests"]
models:
  pipeline_sample:
    +materialized: table
""",
    "profiles.yml": """
pipeline_sample:
  target: dev
  outputs:
    dev:
      type: postgres
      host: "{{ env_var('PGHOST') }}"
      port: "{{ env_var('PGPORT') | int }}"
      user: "{{ env_var('PGUSER') }}"
      password: "{{ env_var('PGPASSWORD') }}"
      dbname: "{{ env_var('PGDATABASE') }}"
      schema: marts
      threads: 2
""",
    "models/_sources.yml": """
version: 2
sources:
  - name: raw
    schema: raw
    tables:
      - name: access_events
        loaded_at_field: _ingested_at
        freshness:
          warn_after: {count: 7, period: day}
""",
    f"models/marts/{MART}.sql": """
select
    event_type,
    count(*) as event_count,
    max(_ingested_at) as last_ingested_at
from {{ source('raw', 'access_events') }}
group by event_type
""",
    "models/_models.yml": f"""
version: 2
models:
  - name: {MART}
    columns:
      - name: event_type
        data_tests: [not_null, unique]
""",
    f"tests/{FAILING_TEST}.sql": f"""
select * from {{{{ ref('{MART}') }}}} where event_type = 'fail'
""",
}


def write_sample_dbt_project(root: Path) -> Path:
    for name, text in _FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip())
    return root


def insert_access_events(
    conn: Any, rows: list[tuple[str, datetime]], topic: str = "smart-access.events"
) -> None:
    """Raw access events as (event_type, _ingested_at), at fresh Kafka coordinates."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "select coalesce(max(kafka_offset), -1) from raw.access_events "
            "where kafka_topic = %s and kafka_partition = 0",
            (topic,),
        )
        offset = int(cur.fetchone()[0])
        for event_type, ingested_at in rows:
            offset += 1
            cur.execute(
                """
                insert into raw.access_events (
                    kafka_topic, kafka_partition, kafka_offset, schema_version, event_id,
                    device_id, household_id, event_ts, event_type, trigger_source,
                    failure_reason, _ingested_at)
                values (%s, 0, %s, 1, %s, 'dev-1', 'hh-1', %s, %s, 'app', %s, %s)
                """,
                (
                    topic,
                    offset,
                    str(uuid.uuid4()),
                    ingested_at,
                    event_type,
                    "obstruction" if event_type == "fail" else None,
                    ingested_at,
                ),
            )


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP endpoint on loopback that keeps the JSON bodies POSTed to it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
