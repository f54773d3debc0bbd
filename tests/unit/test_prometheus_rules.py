"""The stack's alert rules load and fire as their unit tests say (promtool)."""

from __future__ import annotations

import subprocess

from stack import prometheus


def test_alert_rules_are_valid_and_fire_as_specified() -> None:
    promtool = prometheus.ensure_binary("promtool")  # installs Debian's package as root
    check = subprocess.run(
        [promtool, "check", "rules", str(prometheus.RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout
    tests = prometheus.RULES.with_name("alerts_test.yml")
    result = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
