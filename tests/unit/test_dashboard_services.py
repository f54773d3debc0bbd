"""The dashboard and Kafka inspector services of the embedded stack."""

from __future__ import annotations

import pytest

from analytics.settings import ANALYST_ROLE, postgres_settings
from stack.config import StackConfig, StackError
from stack.services import services, supervisord_conf


def _by_name(env: dict[str, str]) -> dict[str, object]:
    return {s.name: s for s in services(StackConfig.from_env(env))}


def test_both_apps_are_supervised_on_loopback_as_the_analyst() -> None:
    found = _by_name({"PGHOST": "db", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    for name, port, script in (
        ("dashboard", 8501, "analytics/streamlit_app.py"),
        ("kafka-ui", 8090, "analytics/kafka_ui/app.py"),
    ):
        svc = found[name]
        assert svc.port == port and svc.stage == "app"  # type: ignore[attr-defined]
        command = svc.command  # type: ignore[attr-defined]
        assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith(script)
        for flag in (
            "--server.headless=true",
            "--browser.gatherUsageStats=false",
            "--server.address=127.0.0.1",
            f"--server.port={port}",
        ):
            assert flag in command
        assert svc.env["PGUSER"] == ANALYST_ROLE  # type: ignore[attr-defined]
        assert svc.env["PGPASSWORD"] == "analyst"  # type: ignore[attr-defined]


def test_ports_and_password_come_from_the_environment() -> None:
    env = {
        "DASHBOARD_PORT": "18501",
        "KAFKA_UI_PORT": "18090",
        "SMART_ACCESS_ANALYST_PASSWORD": "s3cret",
    }
    found = _by_name(env)
    assert found["dashboard"].port == 18501  # type: ignore[attr-defined]
    assert "--server.port=18090" in found["kafka-ui"].command  # type: ignore[attr-defined]
    assert found["dashboard"].env["PGPASSWORD"] == "s3cret"  # type: ignore[attr-defined]
    config = StackConfig.from_env(env)
    conf = supervisord_conf(config, services(config))
    assert "[program:dashboard]" in conf and "[program:kafka-ui]" in conf


@pytest.mark.parametrize("value", ["eighty", "0", "70000"])
def test_a_bad_port_is_one_clear_error(value: str) -> None:
    with pytest.raises(StackError, match="DASHBOARD_PORT"):
        StackConfig.from_env({"DASHBOARD_PORT": value})


def test_the_apps_default_to_the_analyst_role(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("PGUSER", "PGPASSWORD", "SMART_ACCESS_ANALYST_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    settings = postgres_settings()
    assert settings.user == ANALYST_ROLE
    assert settings.password is not None and settings.password.get_secret_value() == "analyst"
    monkeypatch.setenv("PGUSER", "someone")
    assert postgres_settings().user == "someone"
