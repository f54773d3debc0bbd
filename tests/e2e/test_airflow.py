"""The whole platform through `make up`: log in to Airflow, find the DAG paused,
enable it, and get a green run that builds the real dbt marts from the events the
simulator produced and the consumer landed.

The stack runs in a temporary folder on free ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg2
import pytest

from stack.config import REPO_ROOT
from stack.ephemeral import free_stack_ports, make_tempdir
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.e2e

DAG_ID = "smart_access_streaming_pipeline"
NOTIFY_ID = "smart_access_alert_notifications"
TRIAGE_ID = "smart_access_dead_letter_triage"


def _make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver("/notify") as hook:
        yield hook


@pytest.fixture(scope="module")
def stack_env(receiver: Receiver) -> Iterator[dict[str, str]]:
    root = make_tempdir("smart-access-stack-airflow-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_", "AIRFLOW"))}
    env.update(free_stack_ports())
    env.update(
        SMART_ACCESS_STACK_DIR=str(root / "stack"),
        # a burst of 50 dead letters within a minute starts the triage
        SMART_ACCESS_DLQ_BURST_THRESHOLD="50",
        # every pipeline run here outlives a 20-second deadline: the alert must fire
        SMART_ACCESS_RUN_DEADLINE_MINUTES="0.33",
        # device alerts go to a local receiver (the pipeline's own alerts do not)
        SMART_ACCESS_NOTIFY_WEBHOOK_URL=receiver.url,
        SMART_ACCESS_NOTIFY_MAX_PER_HOUSEHOLD_HOUR="0",
    )
    up = _make("up", env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env["_UP_OUTPUT"] = up.stdout
        yield env
    finally:
        _make("down", env)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _api(
    env: dict[str, str], method: str, path: str, body: Any = None, token: str | None = None
) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{env['AIRFLOW_PORT']}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def _token(
    env: dict[str, str],
    user: str = "airflow",
    password: str = "airflow",  # noqa: S107 - the documented local default login
) -> str:
    answer = _api(env, "POST", "/auth/token", {"username": user, "password": password})
    return str(answer["access_token"])


def test_make_up_prints_url_and_login(stack_env: dict[str, str]) -> None:
    out = stack_env["_UP_OUTPUT"]
    assert f"http://127.0.0.1:{stack_env['AIRFLOW_PORT']}" in out
    assert "login airflow / airflow" in out
    health = _api(stack_env, "GET", "/api/v2/monitor/health")
    assert health["metadatabase"]["status"] == "healthy"
    assert health["scheduler"]["status"] == "healthy"

    # A second `make up` neither migrates again nor restarts anything.
    again = _make("up", stack_env)
    assert again.returncode == 0, again.stderr
    assert "migrated to" not in again.stdout


def test_wrong_password_is_refused(stack_env: dict[str, str]) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        _api(stack_env, "POST", "/auth/token", {"username": "airflow", "password": "nope"})
    assert refused.value.code in {401, 403}


def test_enabled_dag_runs_green_under_the_scheduler(stack_env: dict[str, str]) -> None:
    token = _token(stack_env)
    deadline = time.monotonic() + 120
    dag: dict[str, Any] = {}
    while time.monotonic() < deadline:  # the dag-processor serializes it within seconds
        dags = _api(stack_env, "GET", "/api/v2/dags?dag_id_pattern=smart_access", token=token)
        mine = [d for d in dags["dags"] if d["dag_id"] == DAG_ID]
        if mine:
            dag = mine[0]
            break
        time.sleep(2)
    assert dag.get("dag_id") == DAG_ID, "the DAG was never listed"
    assert dag["is_paused"] is True
    assert dag["timetable_summary"] == "*/15 * * * *"

    dsn = (
        f"host=127.0.0.1 port={stack_env['PGPORT']} user=postgres password=postgres "
        "dbname=smart_access"
    )
    # The simulator produces and the consumer lands: wait for the first events.
    deadline = time.monotonic() + 120
    landed = 0
    while time.monotonic() < deadline and landed < 50:
        with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from raw.access_events")
            landed = cur.fetchone()[0]
        time.sleep(2)
    assert landed >= 50, "the simulator and consumer landed no events"
    # A producer written to the original guide (contract v0) joins the fleet.
    guide = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "python"),
            "-m",
            "streaming.producer",
            "--format",
            "v0",
            "--households",
            "5",
            "--rate",
            "500",
            "--count",
            "400",
        ],
        cwd=REPO_ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{stack_env['KAFKA_PORT']}",
            "PYTHONPATH": str(REPO_ROOT),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert guide.returncode == 0, guide.stderr
    deadline = time.monotonic() + 60
    v0_landed = 0
    while time.monotonic() < deadline and v0_landed < 100:
        with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from raw.access_events where schema_version = 0")
            v0_landed = cur.fetchone()[0]
        time.sleep(1)
    assert v0_landed >= 100, "the guide's messages did not land"

    # The alert notifications first: each build of the marts then triggers a run of it.
    _unpause(stack_env, NOTIFY_ID, token)
    patched = _api(stack_env, "PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False}, token=token)
    assert patched["is_paused"] is False
    # Unpausing lets the scheduler create the latest interval's run; a triggered run
    # (no logical date) follows it, max_active_runs=1 keeps them one at a time.
    triggered = _api(
        stack_env, "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None}, token=token
    )
    run_id = triggered["dag_run_id"]

    deadline = time.monotonic() + 420
    state = "queued"
    while time.monotonic() < deadline and state not in {"success", "failed"}:
        time.sleep(5)
        state = _api(stack_env, "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", token=token)[
            "state"
        ]
    tasks = _api(
        stack_env, "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", token=token
    )
    states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
    assert state == "success", states
    assert set(states.values()) == {"success"}, states

    with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(
            "select state, rows_per_mart, tests_failed, tests_passed from ops.pipeline_runs"
            " where run_id = %s",
            (run_id,),
        )
        run_state, rows_per_mart, tests_failed, tests_passed = cur.fetchone()
        assert (run_state, tests_failed) == ("success", 0)
        assert tests_passed > 0
        assert rows_per_mart.get("fct_access_events", 0) > 0, rows_per_mart
        # Every event at or below the last build's commit-safe watermark is in the fact
        # (rows of a loader transaction still open when a build starts wait for the next).
        cur.execute(
            """
            select count(distinct r.event_id),
                   count(distinct r.event_id) filter (where f.event_id is null)
            from raw.access_events r
            left join marts.fct_access_events f using (event_id)
            where r._ingested_at <= (select ingested_through from ops.transform_watermarks
                                     where source_table = 'raw.access_events')
            """
        )
        distinct_raw, missing = cur.fetchone()
        assert distinct_raw > 0 and missing == 0, (distinct_raw, missing)
        # The guide's events are in the fact and in the rollups the dashboard reads.
        cur.execute(
            """
            select count(distinct f.event_id),
                   count(distinct f.event_id) filter (where f.household_id = 'unknown')
            from marts.fct_access_events f
            join raw.access_events r using (event_id)
            where r.schema_version = 0
            """
        )
        v0_facts, unknown_household = cur.fetchone()
        assert v0_facts > 0 and unknown_household == v0_facts  # no registry for them
        cur.execute(
            "select coalesce(sum(event_count), 0) from marts.agg_access_15min"
            " where device_id ~ '^[0-9]+$'"
        )
        assert cur.fetchone()[0] >= v0_facts


def test_each_build_triggers_the_notifications_through_the_fct_alerts_asset(
    stack_env: dict[str, str],
) -> None:
    """The green run's build_models updated every mart's asset, with what it wrote;
    the asset event on marts.fct_alerts started the notifications DAG, which ran green
    and sent every alert transition to the receiver, once each."""
    token = _token(stack_env)
    assets = _api(stack_env, "GET", "/api/v2/assets?name_pattern=marts.&limit=50", token=token)
    names = {a["name"]: a["id"] for a in assets["assets"]}
    assert {"marts.fct_alerts", "marts.fct_access_events", "marts.agg_access_15min"} <= set(names)
    # the graph the UI draws: raw -> the pipeline's gate, build_models -> marts ->
    # the notifications DAG; the DLQ watcher's asset -> the triage DAG
    by_name = {a["name"]: a for a in assets["assets"]}
    alerts = by_name["marts.fct_alerts"]
    assert {(t["dag_id"], t["task_id"]) for t in alerts["producing_tasks"]} == {
        (DAG_ID, "build_models")
    }
    assert {d["dag_id"] for d in alerts["scheduled_dags"]} == {NOTIFY_ID}
    raw = _api(stack_env, "GET", "/api/v2/assets?name_pattern=raw.&limit=50", token=token)
    inlets = {a["name"]: a["consuming_tasks"] for a in raw["assets"]}
    assert {(t["dag_id"], t["task_id"]) for t in inlets["raw.access_events"]} == {
        (DAG_ID, "check_raw_freshness")
    }
    burst = _api(stack_env, "GET", "/api/v2/assets?name_pattern=dlq&limit=5", token=token)
    (dlq,) = burst["assets"]
    assert {d["dag_id"] for d in dlq["scheduled_dags"]} == {TRIAGE_ID}
    events = _api(
        stack_env,
        "GET",
        f"/api/v2/assets/events?asset_id={names['marts.fct_access_events']}",
        token=token,
    )["asset_events"]
    assert events, "build_models emitted no asset event"
    extras = [e["extra"] for e in events]
    assert all("raw.access_events" in x["ingested_through"] for x in extras), extras
    assert any(x["rows_written"] > 0 for x in extras), extras

    deadline = time.monotonic() + 300
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = _api(stack_env, "GET", f"/api/v2/dags/{NOTIFY_ID}/dagRuns", token=token)["dag_runs"]
        if any(r["state"] == "success" for r in runs):
            break
        assert not any(r["state"] == "failed" for r in runs), runs
        time.sleep(5)
    assert any(r["state"] == "success" and r["run_type"] == "asset_triggered" for r in runs), runs
    dsn = (
        f"host=127.0.0.1 port={stack_env['PGPORT']} user=postgres password=postgres "
        "dbname=smart_access"
    )
    with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from marts.fct_alerts where transformed_at is not null")
        alerts = cur.fetchone()[0]
        cur.execute("select status, count(*) from ops.alert_notifications group by status")
        recorded = dict(cur.fetchall())
    if alerts:
        assert set(recorded) == {"sent"}, recorded
    else:
        assert recorded == {}


def test_a_door_left_open_reaches_the_receiver_once_within_one_cycle(
    stack_env: dict[str, str], receiver: Receiver
) -> None:
    """A door opened 25 minutes ago and never closed (landed late, as a buffered device
    sends it): the next pipeline run builds its door_left_open alert and the
    notifications DAG it triggers sends it once; further runs send nothing again."""
    from datetime import UTC, datetime, timedelta
    from uuid import uuid4

    from confluent_kafka import Producer

    token = _token(stack_env)
    opened = datetime.now(UTC) - timedelta(minutes=25)
    event = {
        "schema_version": 1,
        "event_id": str(uuid4()),
        "device_id": "e2e-door-1",
        "household_id": "hh-e2e",
        "event_ts": opened.isoformat(),
        "event_type": "open",
        "trigger_source": "app",
        "user_id": "u-e2e",
    }
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{stack_env['KAFKA_PORT']}"})
    producer.produce("smart-access.events", key=b"e2e-door-1", value=json.dumps(event).encode())
    assert producer.flush(30) == 0
    dsn = (
        f"host=127.0.0.1 port={stack_env['PGPORT']} user=postgres password=postgres "
        "dbname=smart_access"
    )
    deadline = time.monotonic() + 60
    landed = 0
    while time.monotonic() < deadline and not landed:
        with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
            cur.execute(
                "select count(*) from raw.access_events where event_id = %s", (event["event_id"],)
            )
            landed = cur.fetchone()[0]
        time.sleep(1)
    assert landed == 1

    def door_notifications() -> list[dict[str, Any]]:
        return [
            b for b in receiver.received
            if b.get("alert_type") == "door_left_open" and b.get("device_id") == "e2e-door-1"
        ]  # fmt: skip

    for _cycle in range(2):  # the cycle that builds the alert, then one that must not resend
        run = _api(
            stack_env, "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None}, token=token
        )
        deadline = time.monotonic() + 420
        state = "queued"
        while time.monotonic() < deadline and state not in {"success", "failed"}:
            time.sleep(5)
            state = _api(
                stack_env, "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", token=token
            )["state"]
        assert state == "success", state
        # the notifications run this build's asset event started
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            runs = _api(
                stack_env,
                "GET",
                f"/api/v2/dags/{NOTIFY_ID}/dagRuns?order_by=-run_after&limit=1",
                token=token,
            )["dag_runs"]
            if runs and runs[0]["state"] == "success" and runs[0]["run_after"] > run["run_after"]:
                break
            time.sleep(3)
        else:
            pytest.fail("no notifications run after the build")
        sent = door_notifications()
        assert len(sent) == 1, sent
    assert sent[0]["transition"] == "opened" and sent[0]["severity"] == "warning"
    assert sent[0]["text"].startswith("[warning] door left open on device e2e-door-1")
    ids = [b["notification_id"] for b in receiver.received]
    assert len(ids) == len(set(ids)), "a notification was sent twice"


def _unpause(env: dict[str, str], dag_id: str, token: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            answer = _api(env, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token=token)
            assert answer["is_paused"] is False
            return
        except urllib.error.HTTPError as exc:  # not serialized yet
            assert exc.code == 404, exc
            time.sleep(2)
    pytest.fail(f"{dag_id} was never listed")


def test_a_burst_of_dead_letters_starts_one_triage_through_the_watcher(
    stack_env: dict[str, str],
) -> None:
    """The real triggerer's shared Kafka consumer on smart-access.dlq sees the burst
    the consumer dead-letters, the asset event starts the triage DAG once, and the
    triage names the kind, the producer key, the samples' verdict and the redrive."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    token = _token(stack_env)
    _unpause(stack_env, TRIAGE_ID, token)
    bootstrap = f"127.0.0.1:{stack_env['KAFKA_PORT']}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 180
    members = 0
    while time.monotonic() < deadline and not members:
        group = admin.describe_consumer_groups(["smart-access-dlq-watcher"])
        members = len(group["smart-access-dlq-watcher"].result().members)
        time.sleep(2)
    assert members, "the triggerer never started the dead-letter watcher"
    burst = _api(stack_env, "GET", "/api/v2/assets?name_pattern=dlq&limit=5", token=token)
    assert [w["name"] for w in burst["assets"][0]["watchers"]] == ["dead_letter_burst"]
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(120):  # a firmware release that broke the payload
        producer.produce("smart-access.events", key=b"fw-9.9-device", value=b"{broken %d" % n)
    assert producer.flush(30) == 0

    deadline = time.monotonic() + 240
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = _api(stack_env, "GET", f"/api/v2/dags/{TRIAGE_ID}/dagRuns", token=token)["dag_runs"]
        if any(r["state"] in {"success", "failed"} for r in runs):
            break
        time.sleep(3)
    assert [r["state"] for r in runs] == ["success"], runs
    assert runs[0]["run_type"] == "asset_triggered"
    dsn = (
        f"host=127.0.0.1 port={stack_env['PGPORT']} user=postgres password=postgres "
        "dbname=smart_access"
    )
    with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(
            "select dead_letters, by_kind, by_key, samples, redrive_command"
            " from ops.dead_letter_triages where dag_run_id = %s",
            (runs[0]["dag_run_id"],),
        )
        dead, by_kind, by_key, samples, redrive = cur.fetchone()
        # a kind's sample is its newest dead letter in the window: the running
        # simulator's own malformed records may land after the burst
        cur.execute(
            "select format('%%s[%%s]@%%s', kafka_topic, kafka_partition, kafka_offset)"
            " from raw.dead_letters, ops.dead_letter_triages as triage"
            " where triage.dag_run_id = %s and error_kind = 'not_json'"
            " and _ingested_at between triage.since and triage.until"
            " order by _ingested_at desc limit 1",
            (runs[0]["dag_run_id"],),
        )
        (newest,) = cur.fetchone()
    assert by_kind["not_json"] >= 120 and dead >= 120, by_kind
    assert by_key["fw-9.9-device"] >= 120, by_key
    broken = next(s for s in samples if s["kind"] == "not_json")
    assert broken["verdict_now"] == "still refused: not_json"
    assert broken["coordinates"] == newest, (broken, newest)
    assert by_key["fw-9.9-device"] < by_kind["not_json"] or broken["payload"].startswith("{broken")
    assert "python -m streaming.redrive" in redrive and "--kind not_json" in redrive
    time.sleep(10)  # the rest of the burst is inside the cooldown: no second triage
    again = _api(stack_env, "GET", f"/api/v2/dags/{TRIAGE_ID}/dagRuns", token=token)
    assert again["total_entries"] == 1, again


def test_a_run_past_its_deadline_raises_a_warning(stack_env: dict[str, str]) -> None:
    """The deadline (20 s here, 12 min by default) was missed by the green run above:
    the triggerer ran the callback, which wrote the warning."""
    dsn = (
        f"host=127.0.0.1 port={stack_env['PGPORT']} user=postgres password=postgres "
        "dbname=smart_access"
    )
    deadline = time.monotonic() + 120
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline and not rows:
        with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
            cur.execute(
                "select severity, dag_id, summary from ops.pipeline_alerts"
                " where summary like '%%still going at its deadline%%'"
            )
            rows = cur.fetchall()
        time.sleep(3)
    assert rows, "no deadline alert"
    assert rows[0][0] == "warning" and rows[0][1] == DAG_ID


def test_the_viewer_login_reads_and_cannot_change_anything(stack_env: dict[str, str]) -> None:
    """FAB's Viewer role (the read-only login `make up` creates): after the green run
    above it sees the DAG and its runs, and may neither pause it, trigger it, nor read
    the connections (they hold the role passwords)."""
    token = _token(stack_env, "viewer", "viewer")
    dag = _api(stack_env, "GET", f"/api/v2/dags/{DAG_ID}", token=token)
    assert dag["dag_id"] == DAG_ID and dag["is_paused"] is False
    runs = _api(stack_env, "GET", f"/api/v2/dags/{DAG_ID}/dagRuns", token=token)
    assert runs["total_entries"] >= 1
    for method, path, body in (
        ("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": True}),
        ("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None}),
        ("GET", "/api/v2/connections", None),
    ):
        with pytest.raises(urllib.error.HTTPError) as refused:
            _api(stack_env, method, path, body, token=token)
        assert refused.value.code == 403, (method, path)
    admin = _api(stack_env, "GET", f"/api/v2/dags/{DAG_ID}", token=_token(stack_env))
    assert admin["is_paused"] is False  # the refused PATCH changed nothing
    with pytest.raises(urllib.error.HTTPError) as wrong:
        _token(stack_env, "viewer", "airflow")
    assert wrong.value.code in {401, 403}


def _prometheus(env: dict[str, str], query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{env['PROMETHEUS_PORT']}/api/v1/query?" + urllib.parse.urlencode(
        {"query": query}
    )
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", (query, answer)
    return list(answer["data"]["result"])


def test_prometheus_scrapes_every_target_and_the_pipeline_page_graphs_have_data(
    stack_env: dict[str, str],
) -> None:
    """After the green run above: every exporter is up, the platform's own figures
    say what just happened, and each graph the Pipeline page links to has a series."""
    from analytics.settings import PROMETHEUS_GRAPHS

    expected = {"prometheus", "consumer", "simulator", "kafka", "postgres", "node", "airflow"}
    deadline = time.monotonic() + 120
    missing: list[str] = ["(not asked yet)"]
    while time.monotonic() < deadline and missing:
        up = {r["metric"]["job"]: r["value"][1] for r in _prometheus(stack_env, "up")}
        missing = [job for job in sorted(expected) if up.get(job) != "1"]
        missing += [label for label, expr in PROMETHEUS_GRAPHS if not _prometheus(stack_env, expr)]
        success = _prometheus(stack_env, "smart_access_pipeline_last_success_timestamp_seconds")
        if not success or float(success[0]["value"][1]) <= 0:
            missing.append("the DAG's last success")
        runs = _prometheus(stack_env, f'airflow_dagrun_duration_success_count{{dag_id="{DAG_ID}"}}')
        if not runs:
            missing.append("Airflow's run duration of the DAG")
        time.sleep(3)
    assert missing == [], f"no data for: {missing}"
    landed = _prometheus(stack_env, "time() - smart_access_ingest_last_batch_timestamp_seconds")
    assert 0 <= float(landed[0]["value"][1]) < 120  # the simulator keeps landing rows
    beats = _prometheus(stack_env, "increase(airflow_scheduler_heartbeat[1m])")
    assert beats and float(beats[0]["value"][1]) > 0
    leaders = _prometheus(stack_env, "kafka_server_replicamanager_leadercount")
    assert leaders and float(leaders[0]["value"][1]) >= 4  # the platform's topics at least


def _listening_sockets() -> dict[int, list[tuple[str, int]]]:
    """Socket inode -> (local address, port) of every TCP socket in LISTEN state."""
    found: dict[int, list[tuple[str, int]]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[3] != "0A":  # LISTEN
                    continue
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                if width == 8:
                    text = ".".join(str(b) for b in words)
                else:
                    text = ":".join(words[i : i + 2].hex() for i in range(0, 16, 2))
                found.setdefault(int(fields[9]), []).append((text, int(port, 16)))
    return found


def _bound_udp(port: int) -> list[str]:
    """Local addresses of the IPv4 UDP sockets bound to `port`."""
    found = []
    with open("/proc/net/udp") as handle:
        next(handle)
        for line in handle:
            address, bound = line.split()[1].split(":")
            if int(bound, 16) == port:
                found.append(".".join(str(b) for b in bytes.fromhex(address)[::-1]))
    return found


def _descendants(root_pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    seen, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return seen


LOOPBACK = ("127.", "0000:0000:0000:0000:0000:0000:0000:0001", "0000:0000:0000:0000:0000:ffff:7f")


def test_every_listener_is_loopback_and_secret_files_are_owner_only(
    stack_env: dict[str, str],
) -> None:
    root = os.path.realpath(stack_env["SMART_ACCESS_STACK_DIR"])
    with open(os.path.join(root, "run", "supervisord.pid")) as handle:
        supervisor = int(handle.read().strip())
    sockets = _listening_sockets()
    listeners: list[tuple[int, str, int]] = []
    for pid in _descendants(supervisor):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                for address, port in sockets.get(int(target[8:-1]), []):
                    listeners.append((pid, address, port))
    ports = {port for _pid, _address, port in listeners}
    assert int(stack_env["AIRFLOW_PORT"]) in ports and int(stack_env["PGPORT"]) in ports
    wide = [entry for entry in listeners if not entry[1].startswith(LOOPBACK)]
    assert wide == [], f"listening beyond loopback (pid, address, port): {wide}"
    # the one UDP listener, Airflow's StatsD into the exporter, is loopback too
    statsd = _bound_udp(int(stack_env["AIRFLOW_STATSD_PORT"]))
    assert statsd and all(address.startswith(LOOPBACK) for address in statsd), statsd

    secrets = [os.path.join(root, "supervisord.conf")]
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if "airflow" in folder and (
                name.endswith(".json") or "password" in name or "secret" in name
            ):
                secrets.append(path)
    loose = []
    for path in secrets:
        mode = os.stat(path).st_mode & 0o777
        with open(path, errors="replace") as handle:
            holds_secret = any(w in handle.read() for w in ("PASSWORD", "SECRET", "FERNET", '":'))
        holds_secret = holds_secret or "password" in os.path.basename(path)
        if holds_secret and mode & 0o077:
            loose.append((path, oct(mode)))
    assert os.path.join(root, "supervisord.conf") in secrets
    assert os.path.join(root, "airflow", "metadata-password") in secrets
    assert loose == [], f"secret files readable beyond their owner: {loose}"
