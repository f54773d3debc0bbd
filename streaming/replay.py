"""`python -m streaming.replay`: make the sink re-read topics from a point in time.

Replay rewinds the positions stored in `ops.consumer_offsets` (the consumer's
source of truth) to the first offset at or after `--from-timestamp`, or to the
start of what Kafka still retains (`--from-beginning`), for one topic or all.
Positions only ever move back: a replay never skips records.

Landing stays exactly once per Kafka record: rows already in raw (same topic,
partition, offset) are skipped, not duplicated, and dead letters already stored are
neither stored again nor re-sent to the DLQ topic. Records that retention or
compaction removed cannot come back.

`--accept-new-log` is the documented answer to a partition the consumer stopped
because its stored position does not belong to the log Kafka has (the topic was
deleted and recreated, a broker's log was lost, or retention deleted records before
they landed; see `ops.consumer_halts`). It moves the position to the start of the log
Kafka has now; when the log was replaced it also starts a new log epoch, so the new
log's records land beside the old log's rows instead of colliding with them.

The consumers of the group must be stopped first; replay refuses to run while the
group has members, because a running consumer would overwrite the positions.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg2
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streaming import logs
from streaming.cli import ArgumentParser, iso_timestamp
from streaming.metrics import JobFigures, job_metrics_dir, write_job_metrics
from streaming.settings import KafkaSettings, PostgresSettings
from streaming.topics import CONSUMER_GROUP, DATA_TOPICS, DEVICES, topic_ids

__all__ = ["ReplayError", "main", "plan_replay", "rewind"]

logger = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """A replay that cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Move:
    topic: str
    partition: int
    stored: int | None
    target: int

    @property
    def rewinds(self) -> bool:
        return self.stored is not None and self.target < self.stored


def _check_group_idle(admin: AdminClient, group: str, timeout: float) -> None:
    future = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
    try:
        description = future.result()
    except KafkaException as exc:
        if "GROUP_ID_NOT_FOUND" in str(exc):
            return
        raise
    members = len(description.members)
    if members:
        raise ReplayError(
            f"consumer group {group} has {members} running consumer(s); stop them first "
            "(embedded stack: .venv/bin/supervisorctl -c .stack/run/supervisord.conf stop "
            "consumer), replay, then start them again"
        )


def plan_replay(
    kafka: KafkaSettings,
    topics: list[str],
    stored: dict[tuple[str, int], int],
    from_timestamp: datetime | None,
    timeout: float = 15.0,
) -> list[Move]:
    """Target offset of every partition of `topics` (full names)."""
    probe = Consumer(
        {
            **kafka.client_config(),
            "log_level": 3,
            "group.id": "smart-access-replay-probe",
            "enable.auto.commit": False,
        }
    )
    moves: list[Move] = []
    try:
        metadata = probe.list_topics(timeout=timeout)
        for topic in topics:
            if topic not in metadata.topics or metadata.topics[topic].error is not None:
                raise ReplayError(f"topic {topic} does not exist on {kafka.bootstrap_servers}")
            partitions = sorted(metadata.topics[topic].partitions)
            if from_timestamp is not None:
                ms = int(from_timestamp.timestamp() * 1000)
                found = probe.offsets_for_times(
                    [TopicPartition(topic, p, ms) for p in partitions], timeout=timeout
                )
            for p in partitions:
                low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                if from_timestamp is None:
                    target = low
                else:
                    offset = next(tp.offset for tp in found if tp.partition == p)
                    target = high if offset < 0 else offset
                    if low > 0 and target == low:
                        raise ReplayError(
                            f"{from_timestamp.isoformat()} is before what {topic}[{p}] still "
                            f"retains (records before offset {low} were deleted); use "
                            "--from-beginning to replay everything retained, or a later time"
                        )
                moves.append(Move(topic, p, stored.get((topic, p)), target))
    finally:
        probe.close()
    return moves


def rewind(dsn: str, group: str, moves: list[Move]) -> int:
    """Move stored positions back in one transaction; returns the partitions moved."""
    conn = psycopg2.connect(dsn)
    moved = 0
    try:
        with conn, conn.cursor() as cur:
            for move in moves:
                if not move.rewinds:
                    continue
                cur.execute(
                    "update ops.consumer_offsets set next_offset = %s, updated_at = now() "
                    "where consumer_group = %s and topic = %s and partition = %s "
                    "and next_offset > %s",
                    (move.target, group, move.topic, move.partition, move.target),
                )
                moved += cur.rowcount
    finally:
        conn.close()
    return moved


def stored_positions(dsn: str, group: str) -> dict[tuple[str, int], int]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select topic, partition, next_offset from ops.consumer_offsets "
                "where consumer_group = %s",
                (group,),
            )
            return {(t, p): o for t, p, o in cur.fetchall()}
    finally:
        conn.close()


@dataclass(frozen=True)
class Acceptance:
    topic: str
    partition: int
    stored: int
    epoch: int
    target: int
    new_epoch: int
    topic_id: str | None
    reason: str


def plan_accept(
    kafka: KafkaSettings, dsn: str, group: str, topics: list[str], timeout: float = 15.0
) -> list[Acceptance]:
    """The partitions of `topics` whose stored position does not belong to Kafka's log."""
    admin = AdminClient({**kafka.client_config(), "log_level": 3})
    ids = topic_ids(admin, topics, timeout)
    missing = [name for name in topics if name not in ids]
    if missing:
        raise ReplayError(f"topic {missing[0]} does not exist on {kafka.bootstrap_servers}")
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select topic, partition, next_offset, log_epoch, topic_id "
                "from ops.consumer_offsets where consumer_group = %s and topic = any(%s)",
                (group, topics),
            )
            stored = cur.fetchall()
    finally:
        conn.close()
    probe = Consumer({**kafka.client_config(), "log_level": 3, "group.id": group + "-accept"})
    plan: list[Acceptance] = []
    try:
        for topic, partition, offset, epoch, topic_id in stored:
            low, high = probe.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            replaced = bool(topic_id and topic_id != ids[topic]) or offset > high
            if replaced:
                reason = "log replaced" if offset > high else "topic recreated"
                plan.append(
                    Acceptance(topic, partition, offset, epoch, low, epoch + 1, ids[topic], reason)
                )
            elif offset < low:
                plan.append(
                    Acceptance(
                        topic, partition, offset, epoch, low, epoch, ids[topic], "records deleted"
                    )
                )
    finally:
        probe.close()
    return plan


def accept(dsn: str, group: str, plan: list[Acceptance]) -> None:
    """Move the positions to the new log (and epoch) and close the partitions' halts."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            for a in plan:
                cur.execute(
                    "update ops.consumer_offsets set next_offset = %s, log_epoch = %s, "
                    "topic_id = %s, updated_at = now() "
                    "where consumer_group = %s and topic = %s and partition = %s",
                    (a.target, a.new_epoch, a.topic_id, group, a.topic, a.partition),
                )
                cur.execute(
                    "update ops.consumer_halts set resolved_at = clock_timestamp(), resolution = "
                    "%s where consumer_group = %s and topic = %s and partition = %s "
                    "and resolved_at is null",
                    (
                        f"accepted: {a.reason}, position {a.stored} -> {a.target}, "
                        f"log epoch {a.epoch} -> {a.new_epoch}",
                        group,
                        a.topic,
                        a.partition,
                    ),
                )
    finally:
        conn.close()


def _print_accept(plan: list[Acceptance], dry_run: bool, group: str) -> None:
    print(f"{'topic':<40} {'part':>4} {'stored':>10} {'new start':>10} {'epoch':>7}  reason")
    for a in plan:
        print(
            f"{a.topic:<40} {a.partition:>4} {a.stored:>10} {a.target:>10} "
            f"{a.epoch}->{a.new_epoch:<4}  {a.reason}"
        )
    verb = "would accept" if dry_run else "accepted"
    print(f"{verb} the new log of {len(plan)} partition(s) of group {group}; start the consumer")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m streaming.replay",
        description="Rewind the sink's stored positions so the consumer re-reads; "
        "rows already landed are skipped, never duplicated.",
    )
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--from-timestamp",
        type=iso_timestamp,
        metavar="ISO",
        help="re-read records with a Kafka timestamp at or after this moment",
    )
    start.add_argument(
        "--from-beginning", action="store_true", help="re-read everything Kafka still retains"
    )
    start.add_argument(
        "--accept-new-log",
        action="store_true",
        help="resume partitions the consumer stopped because their log was replaced or "
        "truncated (ops.consumer_halts): start at the new log, in a new log epoch",
    )
    p.add_argument(
        "--topic",
        action="append",
        choices=DATA_TOPICS,
        help="replay only this topic (repeatable; default all three)",
    )
    p.add_argument("--group", default=CONSUMER_GROUP, help=f"default {CONSUMER_GROUP}")
    p.add_argument("--topic-prefix", default="", help="topics are <prefix>smart-access.*")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure("WARNING")
    try:
        kafka = KafkaSettings()
        dsn = PostgresSettings().dsn()
    except ValueError as exc:
        sys.stderr.write(f"error: bad settings in the environment: {exc}\n")
        return 2
    topics = [args.topic_prefix + t for t in (args.topic or DATA_TOPICS)]
    started = time.time()
    try:
        # librdkafka's own notices (log_level 3: errors only) would clutter the one-line errors
        admin = AdminClient({**kafka.client_config(), "log_level": 3})
        _check_group_idle(admin, args.group, 15.0)
        if args.accept_new_log:
            plan = plan_accept(kafka, dsn, args.group, topics)
            if not plan:
                raise ReplayError(
                    "nothing to accept: every stored position of group "
                    f"{args.group} belongs to the log Kafka has"
                )
            if not args.dry_run:
                accept(dsn, args.group, plan)
                _write_metrics("accept_new_log", len(plan), 0, started)
            _print_accept(plan, args.dry_run, args.group)
            return 0
        stored = stored_positions(dsn, args.group)
        moves = plan_replay(kafka, topics, stored, args.from_timestamp)
        moved = 0 if args.dry_run else rewind(dsn, args.group, moves)
    except ReplayError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0]
        sys.stderr.write(f"error: cannot reach PostgreSQL ({first}); check PGHOST/PGPORT/PGUSER\n")
        return 1
    except KafkaException as exc:
        sys.stderr.write(f"error: Kafka at {kafka.bootstrap_servers}: {exc}\n")
        return 1
    print(f"{'topic':<40} {'part':>4} {'stored':>10} {'replay from':>12} {'re-read':>9}")
    for m in moves:
        stored_text = "-" if m.stored is None else str(m.stored)
        again = (m.stored - m.target) if m.rewinds and m.stored is not None else 0
        print(f"{m.topic:<40} {m.partition:>4} {stored_text:>10} {m.target:>12} {again:>9}")
    if not args.dry_run:
        records = sum(m.stored - m.target for m in moves if m.rewinds and m.stored is not None)
        _write_metrics("replay", moved, records, started)
    verb = "would rewind" if args.dry_run else "rewound"
    print(
        f"{verb} {sum(m.rewinds for m in moves) if args.dry_run else moved} partition(s) "
        f"of group {args.group}; start the consumer to re-read"
    )
    if any(m.topic.endswith(DEVICES) for m in moves):
        print(
            "note: smart-access.devices is compacted: only the latest record per device "
            "may remain for older offsets"
        )
    return 0


def _write_metrics(mode: str, partitions: int, records: int, started: float) -> None:
    """The last run's figures for Prometheus (node exporter's textfile collector)."""
    figures: JobFigures = {
        "partitions_moved": (
            "Partitions whose stored position the last run moved, by what it did",
            ("mode",),
            [((mode,), partitions)],
        ),
        "records_to_reread": (
            "Records the consumer reads again after the last run's rewind",
            ("mode",),
            [((mode,), records)],
        ),
    }
    try:
        write_job_metrics("replay", figures, started=started, folder=job_metrics_dir())
    except OSError as exc:
        sys.stderr.write(f"warning: metrics not written ({exc}); set SMART_ACCESS_METRICS_DIR\n")


if __name__ == "__main__":
    sys.exit(main())
