"""The stack's alert rules load and fire as their unit tests say (promtool)."""

from __future__ import annotations

import subprocess

import yaml

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
    rules = yaml.safe_load(prometheus.RULES.read_text())
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert f"SUCCESS: {len(names)} rules found" in check.stdout
    tests = prometheus.RULES.with_name("alerts_test.yml")
    # every rule has a case where it fires and one where it must not
    cases = [
        case
        for test in yaml.safe_load(tests.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert set(names) - fires == set(), "rules with no test that they fire"
    assert set(names) - quiet == set(), "rules with no test that they stay quiet"
    result = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_config_is_valid_with_and_without_a_webhook(tmp_path) -> None:
    amtool = prometheus.ensure_binary("prometheus-alertmanager").replace(
        "prometheus-alertmanager", "amtool"
    )
    for name, url in (("with.yml", "http://127.0.0.1:9/alert?token=x"), ("without.yml", None)):
        path = tmp_path / name
        path.write_text(prometheus.render_alertmanager(url))
        result = subprocess.run(
            [amtool, "check-config", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout
        assert ("webhook_configs" in path.read_text()) == (url is not None)
