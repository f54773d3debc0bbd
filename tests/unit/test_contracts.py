"""The v1 event contracts: every rule of the design, and the published JSON Schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from streaming.contracts import (
    SCHEMA_DIR,
    AccessEvent,
    AccessEventV0,
    DeviceRegistration,
    HealthReport,
    HealthReportV0,
    Invalid,
    Validator,
    json_schemas,
    render_schema,
)
from streaming.topics import DEVICES, EVENTS, HEALTH

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

EVENT = {
    "schema_version": 1,
    "event_id": "6f1c1a52-3b8e-4d6a-9a59-0d7f2f0a1b11",
    "device_id": "dev-001",
    "household_id": "hh-001",
    "event_ts": "2026-11-22T12:59:00+01:00",
    "event_type": "open",
    "trigger_source": "app",
    "user_id": "user-7",
}
HEALTH_REPORT = {
    "schema_version": 1,
    "device_id": "dev-001",
    "reported_at": "2026-11-22T11:59:00Z",
    "battery_pct": 87,
    "signal_strength_dbm": -67,
    "is_online": True,
    "firmware_version": "2.4.1",
    "temperature_c": 21.5,
}
REGISTRY = {
    "schema_version": 1,
    "device_id": "dev-001",
    "household_id": "hh-001",
    "device_type": "garage_door",
    "model": "LiftMaster 8500",
    "firmware_version": "2.4.1",
    "installed_at": "2024-03-01T09:00:00Z",
    "status": "active",
    "updated_at": "2026-11-22T11:00:00Z",
    "region": "eu-central",
    "timezone": "Europe/Berlin",
}


def check(topic: str, body: object) -> object:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Validator().validate(topic, raw, NOW)


def with_(base: dict[str, object], **changes: object) -> dict[str, object]:
    out = dict(base)
    for key, value in changes.items():
        if value is ...:
            out.pop(key)
        else:
            out[key] = value
    return out


def test_valid_records_decode_to_their_contracts() -> None:
    assert isinstance(check(EVENTS, EVENT), AccessEvent)
    assert isinstance(check(HEALTH, HEALTH_REPORT), HealthReport)
    registration = check(DEVICES, REGISTRY)
    assert isinstance(registration, DeviceRegistration)
    assert registration.timezone == "Europe/Berlin"
    assert isinstance(check(DEVICES, with_(REGISTRY, region=..., timezone=...)), DeviceRegistration)
    failed = check(EVENTS, with_(EVENT, event_type="fail", failure_reason="obstruction"))
    assert isinstance(failed, AccessEvent) and failed.failure_reason == "obstruction"


def test_late_events_are_valid() -> None:
    assert isinstance(check(EVENTS, with_(EVENT, event_ts="2020-01-01T00:00:00Z")), AccessEvent)


@pytest.mark.parametrize(
    ("topic", "body", "kind"),
    [
        (EVENTS, b"not json at all", "not_json"),
        (EVENTS, b'{"schema_version": 1, \xff\xfe}', "not_utf8"),
        (EVENTS, b"[1, 2, 3]", "not_an_object"),
        (EVENTS, with_(EVENT, device_id=...), "missing_field"),
        (EVENTS, with_(EVENT, household_id=12), "wrong_type"),
        (HEALTH, with_(HEALTH_REPORT, is_online="yes"), "wrong_type"),
        (EVENTS, with_(EVENT, event_type="slam"), "out_of_domain"),
        (EVENTS, with_(EVENT, trigger_source="telepathy"), "out_of_domain"),
        (EVENTS, with_(EVENT, schema_version=2), "out_of_domain"),
        (DEVICES, with_(REGISTRY, device_type="window"), "out_of_domain"),
        (DEVICES, with_(REGISTRY, status="lost"), "out_of_domain"),
        (HEALTH, with_(HEALTH_REPORT, battery_pct=101), "out_of_range"),
        (HEALTH, with_(HEALTH_REPORT, battery_pct=-1), "out_of_range"),
        (HEALTH, with_(HEALTH_REPORT, signal_strength_dbm=-121), "out_of_range"),
        (HEALTH, with_(HEALTH_REPORT, signal_strength_dbm=3), "out_of_range"),
        (EVENTS, with_(EVENT, device_id=""), "out_of_range"),
        (EVENTS, with_(EVENT, device_id="x" * 129), "out_of_range"),
        (EVENTS, with_(EVENT, event_id="not-a-uuid"), "invalid_format"),
        (EVENTS, with_(EVENT, event_ts="2026-11-22T12:00:00"), "invalid_format"),
        (EVENTS, with_(EVENT, event_ts="yesterday"), "invalid_format"),
        (EVENTS, with_(EVENT, event_type="fail"), "rule_violation"),
        (EVENTS, with_(EVENT, failure_reason="obstruction"), "rule_violation"),
        (EVENTS, with_(EVENT, event_type="fail", failure_reason="gremlins"), "out_of_domain"),
        (DEVICES, with_(REGISTRY, timezone="Mars/Olympus_Mons"), "rule_violation"),
        (EVENTS, with_(EVENT, user_id="a\u0000b"), "nul_character"),
        (DEVICES, with_(REGISTRY, model="\u0000"), "nul_character"),
        (EVENTS, with_(EVENT, event_ts="2026-11-22T12:06:00Z"), "future_timestamp"),
        (HEALTH, with_(HEALTH_REPORT, reported_at="2030-01-01T00:00:00Z"), "future_timestamp"),
        (DEVICES, with_(REGISTRY, updated_at="2027-01-01T00:00:00Z"), "future_timestamp"),
        (EVENTS, b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep"),
        (EVENTS, b"[" * 5000 + b"]" * 5000, "too_deep"),
        (EVENTS, with_(EVENT, user_id="u" * 100, padding="p" * 20_000), "too_large"),
        ("smart-access.unknown", EVENT, "unknown_topic"),
    ],
)
def test_invalid_records_get_a_precise_kind(topic: str, body: object, kind: str) -> None:
    result = check(topic, body)
    assert isinstance(result, Invalid), result
    assert result.kind == kind, result
    assert result.detail


def test_clock_skew_allows_a_little_drift() -> None:
    slightly_ahead = with_(EVENT, event_ts="2026-11-22T12:04:00Z")
    assert isinstance(check(EVENTS, slightly_ahead), AccessEvent)
    strict = Validator(max_skew=timedelta(seconds=10))
    raw = json.dumps(slightly_ahead).encode()
    assert strict.validate(EVENTS, raw, NOW) == Invalid(
        "future_timestamp",
        strict.validate(EVENTS, raw, NOW).detail,  # type: ignore[union-attr]
    )


def test_escaped_backslash_u0000_text_is_not_a_nul() -> None:
    # JSON "\\u0000" is a backslash followed by "u0000": storable text
    raw = json.dumps(with_(EVENT, user_id="\\u0000")).encode()
    assert b"\\\\u0000" in raw
    result = Validator().validate(EVENTS, raw, NOW)
    assert isinstance(result, AccessEvent) and result.user_id == "\\u0000"


def test_published_schemas_match_the_code() -> None:
    generated = json_schemas()
    on_disk = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.json")}
    assert set(on_disk) == set(generated)
    for name, schema in generated.items():
        assert on_disk[name] == render_schema(schema), (
            f"{name} is stale: run python -m streaming.contracts --write"
        )


@pytest.mark.parametrize(
    ("filename", "good", "bad"),
    [
        ("access_event.v1.json", EVENT, with_(EVENT, event_type="slam")),
        ("health_report.v1.json", HEALTH_REPORT, with_(HEALTH_REPORT, battery_pct=300)),
        ("device_registration.v1.json", REGISTRY, with_(REGISTRY, model=...)),
    ],
)
def test_schemas_accept_and_reject_like_the_validator(
    filename: str, good: dict[str, object], bad: dict[str, object]
) -> None:
    schema = json.loads((SCHEMA_DIR / filename).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# --- version 0: the original guide's format ---------------------------------------------
GUIDE_EVENT = {
    "event_id": "42-1764373440123",
    "device_id": 42,
    "event_ts": "2025-11-29T01:24:00.123456",
    "event_type": "command_failed",
    "trigger_source": "button",
}
GUIDE_HEALTH = {
    "device_id": 42,
    "reported_at": "2025-11-29T01:24:00.123456",
    "battery_pct": 57,
    "signal_strength_dbm": -71,
    "is_online": True,
}


def test_the_guides_own_messages_are_valid_v0() -> None:
    event = check(EVENTS, GUIDE_EVENT)
    assert isinstance(event, AccessEventV0) and event.schema_version == 0
    assert event.device_id == 42 and event.event_id == "42-1764373440123"
    assert event.event_ts == datetime(2025, 11, 29, 1, 24, 0, 123456, tzinfo=UTC)  # naive is UTC
    health = check(HEALTH, GUIDE_HEALTH)
    assert isinstance(health, HealthReportV0) and health.battery_pct == 57
    assert isinstance(check(EVENTS, {**GUIDE_EVENT, "schema_version": 0}), AccessEventV0)
    assert isinstance(check(EVENTS, {**GUIDE_EVENT, "device_id": "gate-7"}), AccessEventV0)


@pytest.mark.parametrize(
    ("topic", "body", "kind"),
    [
        (EVENTS, {**GUIDE_EVENT, "schema_version": 2}, "out_of_domain"),
        (HEALTH, {**GUIDE_HEALTH, "schema_version": "1.0"}, "out_of_domain"),
        (EVENTS, {**GUIDE_EVENT, "trigger_source": "keypad"}, "out_of_domain"),
        (EVENTS, {**GUIDE_EVENT, "device_id": 2**63}, "out_of_range"),
        (EVENTS, {**GUIDE_EVENT, "device_id": -1}, "out_of_range"),
        (EVENTS, {**GUIDE_EVENT, "event_ts": "2025-11-29T01:24:00+16:00"}, "out_of_range"),
        (EVENTS, {**GUIDE_EVENT, "event_ts": "1970-01-01T00:00:00"}, "implausible_timestamp"),
        (EVENTS, {**GUIDE_EVENT, "event_ts": "2027-11-29T01:24:00"}, "future_timestamp"),
        (EVENTS, {**GUIDE_EVENT, "device_id": "a\u0000b"}, "nul_character"),
        (EVENTS, {k: v for k, v in GUIDE_EVENT.items() if k != "event_id"}, "missing_field"),
        (HEALTH, {**GUIDE_HEALTH, "battery_pct": 101}, "out_of_range"),
        (DEVICES, {"device_id": 42, "status": "active"}, "wrong_type"),  # no v0 registry
    ],
)
def test_v0_is_checked_like_v1(topic: str, body: object, kind: str) -> None:
    result = check(topic, body)
    assert isinstance(result, Invalid) and result.kind == kind, result


def test_an_unknown_version_names_the_versions_there_are() -> None:
    result = check(EVENTS, {**GUIDE_EVENT, "schema_version": 7})
    assert isinstance(result, Invalid) and "unknown schema_version 7" in result.detail
    assert "(v0)" in result.detail
