"""`python -m deploy.create_topics`: create the contract's topics, as `make up` does.

The `topic-init` service of docker-compose.kafka.yml runs this once per `up`. It
calls the same `streaming.topics.ensure_topics` as the embedded stack, so topic
names, partitions and configs cannot drift between the two ways to run the
platform. Idempotent: existing topics keep their data and get their configs aligned.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from streaming.settings import KafkaSettings
from streaming.topics import TOPICS, ensure_topics

__all__ = ["main", "plan"]

logger = logging.getLogger(__name__)


def plan() -> list[dict[str, Any]]:
    """What this command creates: one entry per topic of `streaming.topics.TOPICS`."""
    return [
        {"name": spec.name, "partitions": spec.partitions, "config": dict(spec.config)}
        for spec in TOPICS
    ]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        sys.stderr.write(f"error: {message} (see --help)\n")
        raise SystemExit(2)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m deploy.create_topics", description=__doc__)
    parser.add_argument(
        "--wait",
        type=_positive,
        default=60.0,
        help="seconds to keep retrying while the broker is not reachable (default 60)",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the topics as JSON and exit without contacting Kafka",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.plan:
        print(json.dumps(plan(), indent=2))
        return 0
    try:
        kafka = KafkaSettings()
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        sys.stderr.write(f"error: bad Kafka settings in the environment: {first}\n")
        return 2
    deadline = time.monotonic() + args.wait
    while True:
        attempt = max(1.0, min(10.0, deadline - time.monotonic()))
        try:
            # librdkafka's own connection errors stay quiet: the last one is reported below.
            created = ensure_topics({**kafka.client_config(), "log_level": 0}, timeout=attempt)
            break
        except Exception as exc:  # confluent_kafka raises KafkaException and plain errors
            if time.monotonic() >= deadline:
                sys.stderr.write(
                    f"error: could not create topics at {kafka.bootstrap_servers}: {exc}; "
                    "check that Kafka is up and KAFKA_BOOTSTRAP_SERVERS points at it\n"
                )
                return 1
            logger.info("Kafka at %s not ready yet (%s); retrying", kafka.bootstrap_servers, exc)
            time.sleep(2)
    names = ", ".join(spec.name for spec in TOPICS)
    print(f"created {', '.join(created)}" if created else f"topics up to date: {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
