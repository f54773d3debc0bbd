"""`python -m streaming.producer`: send the simulated fleet's messages to Kafka.

Paced to `--rate` messages per second (optionally in bursts), for `--duration`
seconds or `--count` messages or until interrupted. `--ledger PATH` writes one
JSON line per message with its truth flags and, once acknowledged, its Kafka
coordinates. SIGINT/SIGTERM stop cleanly: everything in flight is flushed first.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from confluent_kafka import KafkaError, Producer

from streaming import logs
from streaming.cli import ArgumentParser, iso_timestamp, number
from streaming.clients import producer_config, refusal
from streaming.metrics import SimulatorMetrics
from streaming.settings import KafkaSettings, settings_error
from streaming.simulator import Message, Simulator, SimulatorConfig

__all__ = ["main", "run"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m streaming.producer",
        description="Simulate a fleet of smart-access devices and send its messages to Kafka.",
    )
    p.add_argument(
        "--rate",
        type=number(float, 0, strict=True),
        default=50.0,
        help="messages per second (default 50)",
    )
    p.add_argument("--households", type=number(int, 1), default=100, help="default 100")
    p.add_argument("--devices-per-household", type=number(int, 1, 20), default=3, help="default 3")
    p.add_argument(
        "--duration", type=number(float, 0, strict=True), help="stop after this many seconds"
    )
    p.add_argument("--count", type=number(int, 1), help="stop after this many messages")
    p.add_argument(
        "--burst",
        type=number(int, 1),
        default=1,
        help="send N messages back to back, then pause to keep the average rate",
    )
    p.add_argument(
        "--seed", type=int, help="same seed (and --start), same messages (default: a random seed)"
    )
    p.add_argument(
        "--start",
        type=iso_timestamp,
        help="simulated clock start (ISO-8601 with offset; default now)",
    )
    p.add_argument(
        "--invalid-ratio",
        type=number(float, 0, 1),
        default=0.0,
        help="share of messages made invalid on purpose (default 0)",
    )
    p.add_argument(
        "--duplicate-ratio",
        type=number(float, 0, 1),
        default=0.0,
        help="share of access events sent twice (default 0)",
    )
    p.add_argument(
        "--late-ratio",
        type=number(float, 0, 1),
        default=0.0,
        help="share of access events with an old event_ts (default 0)",
    )
    p.add_argument(
        "--max-lateness",
        type=number(float, 0, strict=True),
        default=3600.0,
        help="seconds a late event may lag behind at most (default 3600)",
    )
    p.add_argument(
        "--format",
        choices=["v1", "v0"],
        default="v1",
        help="v1: the platform's contracts (default); v0: the original guide's format",
    )
    p.add_argument("--ledger", type=Path, help="write every message's truth as JSON lines here")
    p.add_argument("--topic-prefix", default="", help="send to <prefix>smart-access.*")
    p.add_argument(
        "--metrics-port",
        type=number(int, 0, 65535),
        default=0,
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (default 0: off)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


class _Stats:
    def __init__(self) -> None:
        self.sent = self.acked = self.failed = 0
        self.invalid = self.duplicates = self.late = 0
        self.started = time.monotonic()


def run(args: argparse.Namespace, kafka: KafkaSettings) -> int:
    if args.seed is None:
        args.seed = secrets.randbits(31)
    sim = Simulator(
        SimulatorConfig(
            households=args.households,
            devices_per_household=args.devices_per_household,
            rate=args.rate,
            seed=args.seed,
            invalid_ratio=args.invalid_ratio,
            duplicate_ratio=args.duplicate_ratio,
            late_ratio=args.late_ratio,
            max_lateness=args.max_lateness,
            start=args.start,
            format=args.format,
        )
    )
    stats = _Stats()
    stopping = False
    metrics = SimulatorMetrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port)

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    ledger: IO[str] | None = args.ledger.open("w", encoding="utf-8") if args.ledger else None
    refused: list[str] = []

    def kafka_error(err: KafkaError) -> None:
        nonlocal stopping
        reason = refusal(err, kafka.credential_variable)
        if reason is None:
            logger.warning("Kafka: %s (the client keeps retrying)", err.str())
        elif not refused:  # a wrong password or CA does not heal by retrying
            refused.append(reason)
            stopping = True

    producer = Producer(producer_config(kafka, "smart-access-simulator", error_cb=kafka_error))

    def delivered(message: Message) -> Any:
        def callback(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                stats.acked += 1
                metrics.acknowledged.labels(topic=message.topic).inc()
            else:
                stats.failed += 1
                metrics.failed.labels(topic=message.topic).inc()
            if ledger is not None:
                extra: dict[str, object] = {"delivered": err is None}
                if err is None:
                    extra.update(partition=msg.partition(), offset=msg.offset())
                else:
                    extra["error"] = str(err)
                ledger.write(message.ledger_line(**extra) + "\n")

        return callback

    terminal = sys.stdout.isatty()
    wall_start = time.monotonic()
    last_progress = wall_start
    logger.info(
        "simulating %d households x %d devices at %.0f msg/s (seed %d)",
        args.households,
        args.devices_per_household,
        args.rate,
        args.seed,
    )
    try:
        while not stopping:
            if args.count is not None and stats.sent >= args.count:
                break
            if args.duration is not None and time.monotonic() - wall_start >= args.duration:
                break
            if stats.sent % args.burst == 0:
                # pace: the simulated clock never runs ahead of the wall clock
                ahead = sim.clock - (time.monotonic() - wall_start)
                if ahead > 0:
                    producer.poll(min(ahead, 0.5))
                    continue
            message = sim.next()
            topic = args.topic_prefix + message.topic
            while True:
                try:
                    producer.produce(
                        topic,
                        value=message.value,
                        key=message.key,
                        on_delivery=delivered(message),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            stats.sent += 1
            truth = message.truth
            kind = (
                "invalid"
                if not truth.valid
                else "duplicate"
                if truth.duplicate_of is not None
                else "valid"
            )
            metrics.sent.labels(topic=message.topic, truth=kind).inc()
            stats.invalid += not truth.valid
            stats.duplicates += truth.duplicate_of is not None
            stats.late += truth.lateness_s > 0
            now = time.monotonic()
            if now - last_progress >= (1.0 if terminal else 10.0):
                _progress(stats, terminal)
                last_progress = now
    finally:
        deadline = time.monotonic() + 30
        remaining = len(producer)
        while remaining and not refused and time.monotonic() < deadline:
            remaining = producer.flush(0.5)
        if ledger is not None:
            ledger.close()
    if refused:
        sys.stderr.write(f"error: {refused[0]}\n")
        return 1
    if terminal:
        sys.stdout.write("\n")
    elapsed = time.monotonic() - stats.started
    print(
        f"sent {stats.sent} messages in {elapsed:.1f}s ({stats.sent / max(elapsed, 1e-9):.0f}/s): "
        f"{stats.acked} acknowledged, {stats.failed} failed, {remaining} unflushed; "
        f"{stats.invalid} invalid, {stats.duplicates} duplicates, {stats.late} late"
    )
    return 0 if stats.failed == 0 and remaining == 0 else 1


def _progress(stats: _Stats, terminal: bool) -> None:
    elapsed = time.monotonic() - stats.started
    line = (
        f"sent {stats.sent}  acked {stats.acked}  failed {stats.failed}  "
        f"invalid {stats.invalid}  dup {stats.duplicates}  late {stats.late}  "
        f"{stats.sent / max(elapsed, 1e-9):.0f}/s"
    )
    if terminal:
        sys.stdout.write("\r" + line)
        sys.stdout.flush()
    else:
        logger.info(line)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        kafka = KafkaSettings()
    except ValueError as exc:
        sys.stderr.write(f"error: bad Kafka settings in the environment: {settings_error(exc)}\n")
        return 2
    if args.ledger is not None and not args.ledger.parent.is_dir():
        sys.stderr.write(f"error: --ledger: folder {args.ledger.parent} does not exist\n")
        return 2
    return run(args, kafka)


if __name__ == "__main__":
    sys.exit(main())
