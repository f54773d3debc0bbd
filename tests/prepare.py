"""Install what the test suite needs, once, before `make test` runs its parts.

`make test` runs tests/e2e beside tests/unit + tests/integration (two processes on
the two cores). Both would otherwise install the same things the first time on a
fresh machine, at once: PostgreSQL's server binaries, the Kafka jars (and Kafka
Connect's with the Debezium JDBC sink, the ingest benchmark's peer), Debian's
Prometheus packages (one apt lock), the StatsD exporter and Chromium.

    python -m tests.prepare
"""

from __future__ import annotations

import sys
import time

import pytest

from benchmarks import peer
from stack import exporters, kafka, postgres, prometheus
from stack.config import StackError
from tests.browser_support import chromium_path

STEPS = [
    ("PostgreSQL server binaries", postgres.ensure_binaries),
    ("Apache Kafka jars", kafka.ensure_jars),
    ("Kafka Connect peer jars", peer.ensure_jars),
    *(
        (name, lambda name=name: prometheus.ensure_binary(name))
        for name in (
            "prometheus",
            "promtool",
            "prometheus-alertmanager",
            "prometheus-postgres-exporter",
            "prometheus-node-exporter",
        )
    ),
    ("StatsD exporter", exporters.ensure_statsd_exporter),
    ("Chromium", chromium_path),
]


def main() -> int:
    for name, step in STEPS:
        start = time.monotonic()
        try:
            step()
        except (StackError, pytest.fail.Exception) as error:
            print(f"make test: {name}: {error}", file=sys.stderr)
            return 1
        print(f"==> {name}: ready ({time.monotonic() - start:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
