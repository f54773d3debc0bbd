"""`python -m deploy.healthcheck CHECK`: container health checks of the project's image.

The image has no curl, and "the process exists" says nothing in a container whose
process is PID 1. Each check asks what the service is for:

- `http URL`: the URL answers 2xx (the dashboard's `/_stcore/health`).
- `consumer`: this container's consumer is a member of the sink's consumer group
  (its librdkafka `client.id` starts with the container's host name).
- `producing`: the events topic grew within the last `--window` seconds; the first
  check records the offsets and passes (the service's `start_period` covers it).

Exit 0 when healthy, 1 with one line on stderr saying why not.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["Unhealthy", "check_http", "check_producing", "main", "record_growth"]


class Unhealthy(Exception):
    """The service is not doing its job; the message says what is wrong."""


def check_http(url: str, timeout: float) -> None:
    if not url.startswith(("http://", "https://")):
        raise Unhealthy(f"{url} is not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - checked above
            status = response.status
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unhealthy(f"{url} did not answer: {exc}") from None
    if not 200 <= status < 300:
        raise Unhealthy(f"{url} answered HTTP {status}")


def _admin(timeout: float) -> Any:
    from confluent_kafka.admin import AdminClient

    from streaming.settings import KafkaSettings

    config = KafkaSettings().client_config()
    # Quiet librdkafka: the check prints one line saying why it failed.
    return AdminClient({**config, "socket.timeout.ms": int(timeout * 1000), "log_level": 0})


def check_consumer(group: str, timeout: float, host: str | None = None) -> None:
    from confluent_kafka import KafkaError, KafkaException

    host = host or socket.gethostname()
    admin = _admin(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            future = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
            description = future.result()
            break
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                raise Unhealthy(
                    f"no consumer of this container ({host}) in group {group}: no such group"
                ) from None
            if error is not None and error.retriable() and time.monotonic() < deadline:
                time.sleep(0.5)  # e.g. the group coordinator is still loading
                continue
            raise Unhealthy(f"cannot describe consumer group {group}: {exc}") from None
    members = [m.client_id for m in description.members]
    if not any(client_id.startswith(f"{host}-") for client_id in members):
        raise Unhealthy(
            f"no consumer of this container ({host}) in group {group} "
            f"(state {description.state}, members {members or 'none'})"
        )


def _end_offsets(topic: str, timeout: float) -> int:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = _admin(timeout)
    try:
        metadata = admin.list_topics(topic, timeout=timeout)
        partitions = metadata.topics[topic].partitions
        if not partitions:
            raise Unhealthy(f"topic {topic} does not exist")
        request = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
        results = admin.list_offsets(request, request_timeout=timeout)
        return sum(future.result().offset for future in results.values())
    except Unhealthy:
        raise
    except Exception as exc:
        raise Unhealthy(f"cannot read the end offsets of {topic}: {exc}") from None


def record_growth(state_file: Path, total: int, window: float, now: float) -> None:
    """Remember when `total` last changed; raise when it has not for `window` seconds."""
    try:
        state = json.loads(state_file.read_text())
        last_total, changed_at = int(state["total"]), float(state["changed_at"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        last_total, changed_at = None, now
    if total != last_total:
        changed_at = now
    state_file.write_text(json.dumps({"total": total, "changed_at": changed_at}))
    idle = now - changed_at
    if idle > window:
        raise Unhealthy(f"nothing produced for {idle:.0f}s (end offsets stay at {total})")


def check_producing(topic: str, window: float, state_file: Path, timeout: float) -> None:
    record_growth(state_file, _end_offsets(topic, timeout), window, time.time())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        sys.stderr.write(f"error: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from streaming.topics import CONSUMER_GROUP, EVENTS

    parser = _Parser(prog="python -m deploy.healthcheck", description=__doc__)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    sub = parser.add_subparsers(dest="check", required=True)
    http = sub.add_parser("http", help="the URL answers 2xx")
    http.add_argument("url")
    consumer = sub.add_parser("consumer", help="this container's consumer is in its group")
    consumer.add_argument("--group", default=CONSUMER_GROUP)
    producing = sub.add_parser("producing", help="the topic grew within the window")
    producing.add_argument("--topic", default=EVENTS)
    producing.add_argument("--window", type=float, default=120.0, help="seconds (default 120)")
    producing.add_argument(
        "--state",
        type=Path,
        default=Path(tempfile.gettempdir()) / "producing-health.json",
        help="where the last offsets are kept between checks",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.check == "http":
            check_http(args.url, args.timeout)
        elif args.check == "consumer":
            check_consumer(args.group, args.timeout)
        else:
            check_producing(args.topic, args.window, args.state, args.timeout)
    except Unhealthy as exc:
        sys.stderr.write(f"unhealthy: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
