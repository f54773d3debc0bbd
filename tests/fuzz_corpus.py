"""Payloads the tests already use, as seeds for the decoder/validator fuzzer.

Valid records of every contract, the invalid ones the payload tests dead-letter,
and the hostile ones that once stopped the consumer or a page.
"""

from __future__ import annotations

import json

from streaming.topics import DEVICES, EVENTS, HEALTH

_EVENT = {
    "schema_version": 1,
    "event_id": "5f0c7b7e-8d7a-4d0e-9a43-3f3d0f0f9a11",
    "device_id": "dev-00042",
    "household_id": "hh-0007",
    "event_ts": "2026-11-30T10:00:00.123456+00:00",
    "event_type": "fail",
    "trigger_source": "keypad",
    "user_id": "user-1",
    "failure_reason": "obstruction",
}
_HEALTH = {
    "schema_version": 1,
    "device_id": "dev-00042",
    "reported_at": "2026-11-30T10:00:00Z",
    "battery_pct": 57,
    "signal_strength_dbm": -71,
    "is_online": True,
    "firmware_version": "2.4.1",
    "temperature_c": 21.5,
}
_DEVICE = {
    "schema_version": 1,
    "device_id": "dev-00042",
    "household_id": "hh-0007",
    "device_type": "gate",
    "model": "G-200",
    "firmware_version": "2.4.1",
    "installed_at": "2024-03-01T08:00:00+01:00",
    "status": "active",
    "updated_at": "2026-11-30T10:00:00-05:00",
    "region": "eu-west",
    "timezone": "Europe/Berlin",
}


def _j(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


# the original guide's format (contract v0), as its own producer sends it
_EVENT_V0 = {
    "event_id": "42-1764373440123",
    "device_id": 42,
    "event_ts": "2026-11-30T10:00:00.123456",
    "event_type": "command_failed",
    "trigger_source": "button",
}
_HEALTH_V0 = {
    "device_id": 42,
    "reported_at": "2026-11-30T10:00:00.123456",
    "battery_pct": 57,
    "signal_strength_dbm": -71,
    "is_online": True,
}

VALID: dict[str, list[bytes]] = {
    EVENTS: [
        _j(_EVENT),
        _j({**_EVENT, "event_type": "open", "failure_reason": None}),
        _j(_EVENT_V0),
        _j({**_EVENT_V0, "schema_version": 0, "device_id": "gate-7"}),
    ],
    HEALTH: [
        _j(_HEALTH),
        _j({k: v for k, v in _HEALTH.items() if k != "temperature_c"}),
        _j(_HEALTH_V0),
    ],
    DEVICES: [_j(_DEVICE), _j({**_DEVICE, "timezone": None, "region": None})],
}

HOSTILE: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b"this is not json",
    b'{"schema_version": 1, "device_id": "\xff\xfe"}',
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"[" * 3000 + b"]" * 3000,
    _j({**_EVENT, "event_ts": "2026-11-30T10:00:00+16:00"}),
    _j({**_EVENT, "event_ts": "2026-11-30T10:00:00-23:59"}),
    _j({**_EVENT, "event_ts": "0001-01-01T00:00:00+15:00"}),
    _j({**_EVENT, "event_ts": "9999-12-31T23:59:59-15:59"}),
    _j({**_HEALTH, "reported_at": "1900-01-01T00:00:00Z"}),
    _j({**_HEALTH, "battery_pct": 10**30}),
    _j({**_HEALTH, "temperature_c": 1e308}),
    _j({**_EVENT, "user_id": "nul\u0000inside"}),
    b'{"schema_version": 1, "device_id": "a\\ud800b"}',
    _j({**_EVENT, "device_id": "d" * 500}),
    _j({**_DEVICE, "timezone": "Nowhere/City"}),
    _j({**_EVENT, "schema_version": 2}),
    _j({**_EVENT_V0, "device_id": 2**64}),
    _j({**_EVENT_V0, "event_ts": "2026-11-30T10:00:00+16:00"}),
    _j({**_EVENT_V0, "trigger_source": "keypad"}),
    _j({**_HEALTH_V0, "reported_at": "1900-01-01T00:00:00"}),
    _j({**_EVENT, "padding": "x" * 20_000}),
    b'<script>alert("x")</script>',
    bytes(range(256)),
]

CORPUS: list[bytes] = [payload for values in VALID.values() for payload in values] + HOSTILE
