"""`python -m streaming.redrive`: land dead letters the current contracts accept.

Dead letters are re-validated under the contracts as they are now (after a contract
learned a format, v0 say, or a bound moved), exactly as the consumer would: the same
validator, key checks and tombstone rule, with the moment the record was first read
as "now" for the clock-skew check. The ones now valid land in raw with their original
Kafka coordinates, in one transaction per chunk together with the mark on their dead
letter (`redriven_at`, `redriven_to`), so a redrive is exactly once: run twice and the
second lands nothing; killed midway, the rerun completes the rest. Dead letters that
are still invalid stay where they are, with their new reason in `redrive_error_kind` /
`redrive_error_detail`. The DLQ topic is left as it is.

Runs beside a running consumer: it writes only rows whose coordinates the consumer
already dead-lettered, and never touches stored positions.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2

from streaming import logs
from streaming.cli import ArgumentParser, iso_timestamp
from streaming.consumer import absorb_record, contract_topic
from streaming.contracts import Validator
from streaming.metrics import JobFigures, job_metrics_dir, write_job_metrics
from streaming.settings import PostgresSettings
from streaming.sink import Batch, PostgresSink, Record, failures
from streaming.topics import DATA_TOPICS

__all__ = ["Outcome", "main", "redrive"]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 2_000

_SELECT = """
select kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch, kafka_timestamp, kafka_key,
       payload, error_kind, _ingested_at
from raw.dead_letters
where redriven_at is null
  and (kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch) > (%s, %s, %s, %s)
  and kafka_topic like %s
  and (cardinality(%s::text[]) = 0 or error_kind = any(%s::text[]))
  and (%s::timestamptz is null or _ingested_at >= %s::timestamptz)
  and (%s::timestamptz is null or _ingested_at < %s::timestamptz)
order by kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch
limit %s
"""


@dataclass
class Outcome:
    """What a redrive did (or would do), by the dead letters' kinds."""

    seen: int = 0
    landed: Counter[str] = field(default_factory=Counter)
    still_invalid: Counter[tuple[str, str]] = field(default_factory=Counter)


def _like(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def redrive(
    dsn: str,
    *,
    kinds: list[str],
    topics: list[str],
    since: datetime | None,
    until: datetime | None,
    dry_run: bool,
    prefix: str = "",
    chunk: int = DEFAULT_CHUNK,
    validator: Validator | None = None,
    progress: Any = None,
) -> Outcome:
    validator = validator or Validator()
    sink = PostgresSink(dsn, "smart-access-redrive", "redrive")
    reader = psycopg2.connect(dsn)
    outcome = Outcome()
    after: tuple[str, int, int, int] = ("", -1, -1, -1)
    try:
        while True:
            with reader.cursor() as cur:
                cur.execute(
                    _SELECT,
                    (*after, _like(prefix), kinds, kinds, since, since, until, until, chunk),
                )
                rows = cur.fetchall()
            reader.rollback()
            if not rows:
                break
            after = tuple(rows[-1][:4])
            batch = Batch()
            old_kind: dict[tuple[str, int, int, int], str] = {}
            for topic, partition, offset, epoch, kafka_ts, key, payload, kind, seen_at in rows:
                contract = contract_topic(topic, prefix)
                if contract is None or (topics and contract not in topics):
                    continue
                outcome.seen += 1
                old_kind[(topic, partition, offset, epoch)] = kind
                millis = int(kafka_ts.timestamp() * 1000) if kafka_ts is not None else -1
                record = Record(
                    topic,
                    partition,
                    offset,
                    millis,
                    None if key is None else bytes(key),
                    None if payload is None else bytes(payload),
                    epoch,
                )
                absorb_record(batch, validator.validate, record, contract, seen_at)
            if not dry_run and batch.size:
                landed, failed = sink.redrive(batch)
            else:
                landed, failed = batch.landing(), failures(batch.dead)
            for topic, partition, offset, epoch, _target in landed:
                outcome.landed[old_kind[(topic, partition, offset, epoch)]] += 1
            for topic, partition, offset, epoch, kind, _detail in failed:
                outcome.still_invalid[(old_kind[(topic, partition, offset, epoch)], kind)] += 1
            if progress is not None:
                progress(outcome)
    finally:
        reader.close()
        sink.close()
    return outcome


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m streaming.redrive",
        description="Re-validate dead letters under the current contracts and land the ones "
        "now valid in raw, exactly once.",
    )
    p.add_argument(
        "--kind", action="append", default=[], help="only dead letters of this error_kind"
    )
    p.add_argument(
        "--topic", action="append", choices=DATA_TOPICS, default=[], help="only this topic"
    )
    p.add_argument("--topic-prefix", default="", help="topics are <prefix>smart-access.*")
    p.add_argument("--since", type=iso_timestamp, metavar="ISO", help="dead-lettered at or after")
    p.add_argument("--until", type=iso_timestamp, metavar="ISO", help="dead-lettered before")
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK,
        help=f"dead letters per transaction (default {DEFAULT_CHUNK})",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would land, change nothing")
    return p


def _summary(outcome: Outcome, dry_run: bool) -> str:
    verb = "would land" if dry_run else "landed"
    lines = [f"{outcome.seen} dead letters re-validated; {verb} {sum(outcome.landed.values())}"]
    for kind, n in sorted(outcome.landed.items()):
        lines.append(f"  {verb:>11} {n:>8}  were {kind}")
    for (kind, new_kind), n in sorted(outcome.still_invalid.items()):
        lines.append(f"  {'still invalid':>11} {n:>8}  were {kind}, now {new_kind}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure("WARNING")
    if args.chunk <= 0:
        sys.stderr.write(f"error: --chunk must be a positive integer, got {args.chunk}\n")
        return 2
    try:
        dsn = PostgresSettings().dsn()
    except ValueError as exc:
        sys.stderr.write(f"error: bad settings in the environment: {exc}\n")
        return 2
    tty = sys.stderr.isatty()
    started = time.time()

    def progress(outcome: Outcome) -> None:
        if tty:
            sys.stderr.write(
                f"\r{outcome.seen} re-validated, {sum(outcome.landed.values())} landed"
            )
            sys.stderr.flush()

    try:
        outcome = redrive(
            dsn,
            kinds=args.kind,
            topics=args.topic,
            since=args.since,
            until=args.until,
            dry_run=args.dry_run,
            prefix=args.topic_prefix,
            chunk=args.chunk,
            progress=progress,
        )
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0]
        sys.stderr.write(f"error: cannot reach PostgreSQL ({first}); check PGHOST/PGPORT/PGUSER\n")
        return 1
    except psycopg2.errors.InsufficientPrivilege as exc:
        first = str(exc).strip().splitlines()[0]
        sys.stderr.write(
            f"error: {first}; run redrive as the loader role (PGUSER=smart_access_loader)\n"
        )
        return 1
    if tty:
        sys.stderr.write("\n")
    print(_summary(outcome, args.dry_run))
    if not args.dry_run:
        _write_metrics(outcome, started)
    return 0


def _write_metrics(outcome: Outcome, started: float) -> None:
    """The last run's figures for Prometheus (node exporter's textfile collector)."""
    figures: JobFigures = {
        "dead_letters_seen": (
            "Dead letters re-validated by the last run",
            (),
            [((), outcome.seen)],
        ),
        "landed": (
            "Dead letters the last run landed (or would land), by their old kind",
            ("kind",),
            [((kind,), n) for kind, n in outcome.landed.items()],
        ),
        "still_invalid": (
            "Dead letters still refused by the last run, by old and new kind",
            ("kind", "new_kind"),
            [((kind, new), n) for (kind, new), n in outcome.still_invalid.items()],
        ),
    }
    try:
        write_job_metrics("redrive", figures, started=started, folder=job_metrics_dir())
    except OSError as exc:
        sys.stderr.write(f"warning: metrics not written ({exc}); set SMART_ACCESS_METRICS_DIR\n")


if __name__ == "__main__":
    sys.exit(main())
