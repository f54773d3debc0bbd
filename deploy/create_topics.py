"""`python -m deploy.create_topics`: create the contract's topics, as `make up` does.

The `topic-init` service of docker-compose.kafka.yml runs this once per `up`. It
calls the same `streaming.topics.ensure_topics` as the embedded stack, so topic
names, partitions and configs cannot drift between the two ways to run the
platform. Idempotent: existing topics keep their data and get their configs aligned.

Logged in as the admin principal over SASL (KAFKA_SECURITY_PROTOCOL=SASL_SSL,
KAFKA_SASL_USERNAME=smart-access-admin), it then calls the same
`streaming.principals.ensure_principals` as `make up` with KAFKA_AUTH=scram: every
principal's SCRAM credential is set from KAFKA_<ROLE>_PASSWORD (or its local default)
and the platform principals' ACLs become exactly `streaming.principals.ACLS`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from streaming.principals import ACLS, ADMIN, PRINCIPALS, password_variable, passwords
from streaming.settings import KafkaSettings
from streaming.topics import TOPICS, ensure_topics

__all__ = ["main", "manages_principals", "plan"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_USERNAMES = {p.role: p.username for p in PRINCIPALS}


def manages_principals(env: Mapping[str, str]) -> bool:
    """Whether this login sets the principals: only the admin over SASL may, and a
    plaintext cluster has no principals to set."""
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    return protocol.startswith("SASL") and env.get("KAFKA_SASL_USERNAME") == ADMIN.username


def plan(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What this command creates, without contacting Kafka: the topics of
    `streaming.topics.TOPICS`, and the users and ACLs of `streaming.principals`, which
    it applies when `manage_principals` is true for `env` (default: this process's)."""
    env = os.environ if env is None else env
    return {
        "topics": [
            {"name": spec.name, "partitions": spec.partitions, "config": dict(spec.config)}
            for spec in TOPICS
        ],
        "manage_principals": manages_principals(env),
        "principals": [
            {"username": p.username, "password_variable": password_variable(p.role)}
            for p in PRINCIPALS
        ],
        "acls": [
            {
                "principal": f"User:{_USERNAMES[grant.role]}",
                "resource": grant.resource,
                "name": grant.name,
                "pattern": grant.pattern,
                "operations": list(grant.operations),
            }
            for grant in ACLS
        ],
    }


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


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of brokers, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m deploy.create_topics", description=__doc__)
    parser.add_argument(
        "--wait",
        type=_positive,
        default=60.0,
        help="seconds to keep retrying while the broker is not reachable (default 60)",
    )
    parser.add_argument(
        "--brokers",
        type=_count,
        default=1,
        help="wait until this many brokers are up, so that topics get their replicas "
        "(up to 3) from the start (default 1)",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the topics, principals and ACLs as JSON and exit without contacting Kafka",
    )
    return parser


class _Failed(Exception):
    """Stop with this one line on stderr and exit `status`: 2 for a setting to fix before
    trying again, 1 for Kafka not answering or refusing us."""

    def __init__(self, line: str, status: int = 2) -> None:
        super().__init__(line)
        self.status = status


class _NotYet(Exception):
    """Kafka answers but is not ready for this step; retried like a connection error."""


def _retrying(
    what: str, step: Callable[[float], T], kafka: KafkaSettings, refused: list[str], wait: float
) -> T:
    """`step(timeout)` until it succeeds or the deadline passes; a refused login or an
    untrusted certificate (`refused`, from the clients' error_cb) stops it at once."""
    deadline = time.monotonic() + wait
    while True:
        attempt = max(1.0, min(10.0, deadline - time.monotonic()))
        try:
            return step(attempt)
        except Exception as exc:  # confluent_kafka raises KafkaException and plain errors
            if refused:
                raise _Failed(refused[0], status=1) from None
            if time.monotonic() >= deadline:
                raise _Failed(
                    f"could not {what} at {kafka.bootstrap_servers}: {exc}; "
                    "check that Kafka is up and KAFKA_BOOTSTRAP_SERVERS points at it",
                    status=1,
                ) from None
            logger.info("Kafka at %s not ready yet (%s); retrying", kafka.bootstrap_servers, exc)
            time.sleep(2)


def _topics(config: dict[str, Any], brokers: int, timeout: float) -> list[str]:
    from confluent_kafka.admin import AdminClient

    # ensure_topics replicates as widely as the brokers it sees: wait for all of them
    up = len(AdminClient(config).list_topics(timeout=timeout).brokers)
    if up < brokers:
        raise _NotYet(f"{up} of {brokers} brokers are up")
    return ensure_topics(config, timeout=timeout)


def _credentials(kafka: KafkaSettings, env: Mapping[str, str]) -> dict[str, str]:
    """Every principal's password, checked against the admin's own login."""
    credentials = passwords(dict(env))
    login = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    if login != credentials[ADMIN.role]:
        # the admin's credential would change under the brokers, which log in with it
        raise _Failed(
            f"KAFKA_SASL_PASSWORD differs from {password_variable(ADMIN.role)}: setting the "
            "principals would change the admin's password; give both the same value"
        )
    return credentials


def _client_config(kafka: KafkaSettings, refused: list[str]) -> dict[str, Any]:
    from streaming.clients import refusal

    def on_error(err: Any) -> None:
        reason = refusal(err, kafka.credential_variable)
        if reason:
            refused.append(reason)

    # librdkafka's own connection errors stay quiet: the last one is reported instead.
    return {**kafka.client_config(), "error_cb": on_error, "log_level": 0}


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    try:
        kafka = KafkaSettings()
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        raise _Failed(f"bad Kafka settings in the environment: {first}") from None
    managed = manages_principals(env)
    if env.get("KAFKA_AUTH") == "scram" and not managed:
        raise _Failed(
            "KAFKA_AUTH=scram: the principals are set by the admin; set "
            f"KAFKA_SECURITY_PROTOCOL=SASL_SSL and KAFKA_SASL_USERNAME={ADMIN.username}"
        )
    credentials = _credentials(kafka, env) if managed else {}
    refused: list[str] = []
    config = _client_config(kafka, refused)
    created = _retrying(
        "create topics",
        lambda timeout: _topics(config, args.brokers, timeout),
        kafka,
        refused,
        args.wait,
    )
    names = ", ".join(spec.name for spec in TOPICS)
    print(f"created {', '.join(created)}" if created else f"topics up to date: {names}")
    if not managed:
        return
    from streaming.principals import ensure_principals

    users, added, removed = _retrying(
        "set principals and ACLs",
        lambda timeout: ensure_principals(config, credentials, timeout=timeout),
        kafka,
        refused,
        args.wait,
    )
    print(f"{len(users)} SCRAM users set; ACLs: {added} created, {removed} removed")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.plan:
        print(json.dumps(plan(), indent=2))
        return 0
    try:
        _run(args, os.environ)
    except _Failed as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
