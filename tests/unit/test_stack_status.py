"""`make status` reads supervisord's log: restart counts and crash loops."""

from __future__ import annotations

from datetime import datetime

from stack.cli import describe_state, unexpected_exits

LOG = """\
2026-12-01 08:00:00,001 INFO supervisord started with pid 10
2026-12-01 08:00:01,002 INFO spawned: 'consumer' with pid 11
2026-12-01 08:05:00,003 INFO exited: consumer (exit status 1; not expected)
2026-12-01 09:00:00,001 INFO supervisord started with pid 20
2026-12-01 09:00:01,002 INFO spawned: 'consumer' with pid 21
2026-12-01 09:01:00,003 INFO exited: consumer (exit status 1; not expected)
2026-12-01 09:01:02,004 INFO spawned: 'consumer' with pid 22
2026-12-01 09:02:00,005 INFO exited: consumer (terminated by SIGKILL; not expected)
2026-12-01 09:02:30,006 INFO exited: kafka-ui (exit status 0; expected)
2026-12-01 09:03:00,007 INFO exited: consumer (exit status 1; not expected)
2026-12-01 09:03:01,008 INFO gave up: consumer entered FATAL state, too many start retries
"""


def test_exits_count_since_supervisord_last_started() -> None:
    exits = unexpected_exits(LOG)
    assert len(exits["consumer"]) == 3  # the 08:05 exit belongs to an earlier run
    assert "kafka-ui" not in exits  # an expected exit is not a restart


def test_crash_loop_is_marked() -> None:
    exits = unexpected_exits(LOG)["consumer"]
    soon = datetime(2026, 12, 1, 9, 5)
    assert describe_state("RUNNING", exits, soon) == "RUNNING,crash-loop"
    assert describe_state("RUNNING", exits, datetime(2026, 12, 1, 10, 0)) == "RUNNING"
    assert describe_state("BACKOFF", [], soon) == "BACKOFF,crash-loop"
    assert describe_state("RUNNING", exits[:1], soon) == "RUNNING"
