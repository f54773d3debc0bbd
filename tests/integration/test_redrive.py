"""Redrive lands dead letters the contracts learned to accept, exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest_helpers import (
    LOADER,
    REPO,
    counts,
    job_metrics,
    new_prefix,
    produce,
    query,
    start_consumer,
    stop_consumer,
    wait_until,
)

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.contracts import Contract, Invalid, Validator
from streaming.topics import EVENTS, HEALTH


class BeforeV0(Validator):
    """The validator as it was before contract v0: a message without a version fails."""

    def validate_v0(self, topic: str, value: bytes, now: datetime) -> Contract | Invalid:
        return Invalid("invalid_format", "Invalid UUID - at `$.event_id`")


def guide_event(n: int) -> bytes:
    moment = datetime.now(UTC).replace(tzinfo=None)
    return json.dumps(
        {
            "event_id": f"{n % 50}-{n}",
            "device_id": n % 50,
            "event_ts": moment.isoformat(),
            "event_type": "open",
            "trigger_source": "button",
        }
    ).encode()


def land_before_v0(kafka: EphemeralKafka, pg: EphemeralPostgres, records: list) -> str:
    prefix = new_prefix(kafka)
    produce(kafka, prefix, records)
    consumer, thread = start_consumer(kafka, pg, prefix)
    consumer.validator = BeforeV0()
    try:
        wait_until(lambda: counts(pg, prefix)["dead_letters"] == len(records), 60, "dead letters")
    finally:
        stop_consumer(consumer, thread)
    return prefix


def redrive(pg: EphemeralPostgres, *args: str, metrics: Path | None = None, **popen: Any) -> Any:
    env = {**os.environ, **pg.env(user=LOADER), "PYTHONPATH": str(REPO)}
    # never the developer's own stack's metrics folder
    env["SMART_ACCESS_METRICS_DIR"] = str(metrics or REPO / "tests" / "artifacts" / "metrics")
    command = [sys.executable, "-m", "streaming.redrive", *args]
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, **popen)
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_dead_letters_from_before_v0_land_once_v0_exists(
    kafka: EphemeralKafka, pg: EphemeralPostgres, tmp_path: Path
) -> None:
    records = [(EVENTS, str(n % 50).encode(), guide_event(n)) for n in range(40)]
    records += [(HEALTH, b"7", b"{not json")] * 3
    prefix = land_before_v0(kafka, pg, records)
    assert counts(pg, prefix)["access_events"] == 0

    dry = redrive(pg, "--topic-prefix", prefix, "--dry-run", metrics=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would land 40" in dry.stdout
    assert counts(pg, prefix)["access_events"] == 0  # a dry run changes nothing
    assert list(tmp_path.iterdir()) == []  # nor the last run's metrics

    done = redrive(
        pg,
        "--topic-prefix",
        prefix,
        "--kind",
        "invalid_format",
        "--kind",
        "not_json",
        metrics=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "landed 40" in done.stdout and "now not_json" in done.stdout
    # the last run's figures, for the node exporter's textfile collector
    figures = job_metrics(tmp_path, "redrive")
    assert figures[("smart_access_redrive_dead_letters_seen", ())] == 43
    landed = {k: v for k, v in figures.items() if k[0] == "smart_access_redrive_landed"}
    assert sum(landed.values()) == 40 and all(dict(k[1]).get("kind") for k in landed)
    still = {k: v for k, v in figures.items() if k[0] == "smart_access_redrive_still_invalid"}
    assert list(still.values()) == [3]
    assert dict(next(iter(still))[1])["new_kind"] == "not_json"
    assert figures[("smart_access_redrive_last_run_timestamp_seconds", ())] > time.time() - 300
    rows = query(
        pg,
        "select e.kafka_partition, e.kafka_offset, e.source_event_id, d.redriven_to "
        "from raw.access_events e join raw.dead_letters d using "
        "(kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch) where e.kafka_topic = %s",
        (prefix + EVENTS,),
    )
    assert len(rows) == 40 and {r[3] for r in rows} == {"raw.access_events"}
    still = query(
        pg,
        "select redriven_at, redrive_error_kind from raw.dead_letters where kafka_topic = %s",
        (prefix + HEALTH,),
    )
    assert still == [(None, "not_json")] * 3

    again = redrive(pg, "--topic-prefix", prefix)
    assert again.returncode == 0 and "landed 0" in again.stdout
    assert counts(pg, prefix)["access_events"] == 40


def test_redrive_killed_midway_completes_exactly_once(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    records = [(EVENTS, str(n % 50).encode(), guide_event(n)) for n in range(3000)]
    prefix = land_before_v0(kafka, pg, records)
    proc = redrive(
        pg,
        "--topic-prefix",
        prefix,
        "--chunk",
        "25",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: counts(pg, prefix)["access_events"] > 100, 60, "a first chunk")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    partial = counts(pg, prefix)["access_events"]
    assert 0 < partial < 3000, partial
    time.sleep(0.5)
    done = redrive(pg, "--topic-prefix", prefix, "--topic", EVENTS)
    assert done.returncode == 0, done.stderr
    rows = query(
        pg,
        "select kafka_partition, kafka_offset from raw.access_events where kafka_topic = %s",
        (prefix + EVENTS,),
    )
    assert len(rows) == len(set(rows)) == 3000
    ((pending,),) = query(
        pg,
        "select count(*) from raw.dead_letters where kafka_topic = %s and redriven_at is null",
        (prefix + EVENTS,),
    )
    assert pending == 0


def test_bad_flags_and_missing_database_are_one_line(pg: EphemeralPostgres) -> None:
    bad = redrive(pg, "--since", "yesterday")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    env = {**os.environ, **pg.env(user=LOADER), "PGPORT": "1", "PYTHONPATH": str(REPO)}
    down = subprocess.run(
        [sys.executable, "-m", "streaming.redrive"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 1 and down.stderr.startswith("error: cannot reach PostgreSQL")
    assert len(down.stderr.strip().splitlines()) == 1
