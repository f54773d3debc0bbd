"""Typed event contracts (versions 1 and 0) and the validator every consumed record passes.

Version 1 is the platform's own format. Version 0 is the format of the original
setup guide, which devices in the field already send: no `schema_version`, integer
device ids, event ids that are not UUIDs, timestamps without an offset (read as UTC),
`command_failed` for a failure, trigger source `button`, no household or firmware.
A message without `schema_version` is v0; one with an unknown version is invalid.
v0 lands in raw with its original values and `schema_version` 0; staging maps it to v1.

The three event kinds of the design are msgspec structs: decoding checks types,
required fields, domains and ranges in C. What a struct cannot say by itself lives
in `Validator.validate`: the size limit, NUL characters, clock skew for future
timestamps, and the classification of a failure into a precise `error_kind`.

The JSON Schemas in `streaming/schemas/` are generated from these structs
(`python -m streaming.contracts --write`); a unit test keeps them in step.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import available_timezones

import msgspec

from streaming.topics import DEVICES, EVENTS, HEALTH

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SKEW",
    "DEFAULT_MIN_TIMESTAMP",
    "ERROR_KINDS",
    "MAX_UTC_OFFSET",
    "SCHEMA_DIR",
    "V0_EVENT_NAMESPACE",
    "AccessEvent",
    "AccessEventV0",
    "Contract",
    "DeviceRegistration",
    "DeviceRemoval",
    "HealthReport",
    "HealthReportV0",
    "Invalid",
    "Validator",
    "json_schemas",
    "nesting_depth",
    "v0_event_uuid",
]

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
DEFAULT_MAX_BYTES: Final = 16 * 1024
DEFAULT_MAX_SKEW: Final = timedelta(minutes=5)
# Device clocks before this are implausible (a reset RTC reports 1970 or 1900).
DEFAULT_MIN_TIMESTAMP: Final = datetime(2000, 1, 1, tzinfo=UTC)
# PostgreSQL's timestamptz input refuses offsets of 16 hours or more (ISO-8601 allows 23:59).
MAX_UTC_OFFSET: Final = timedelta(hours=15, minutes=59)

# Every reason a record can be dead-lettered for; `raw.dead_letters.error_kind`.
ERROR_KINDS: Final = (
    "too_large",  # payload above the configured size limit
    "not_utf8",  # payload bytes are not UTF-8
    "not_json",  # UTF-8 but not a JSON document
    "too_deep",  # JSON nested beyond what the decoder accepts
    "not_an_object",  # JSON, but not an object at the top level
    "missing_field",  # a required field is absent
    "wrong_type",  # a field has the wrong JSON type
    "invalid_format",  # right type, wrong shape (UUID, timestamp without offset, ...)
    "out_of_domain",  # a value outside its enumeration
    "out_of_range",  # a number outside its range, or text too short/long
    "rule_violation",  # a cross-field rule (fail without failure_reason, ...)
    "nul_character",  # text carries U+0000, which PostgreSQL text cannot store
    "future_timestamp",  # a timestamp further in the future than the allowed skew
    "implausible_timestamp",  # a timestamp before the plausibility floor (default 2000-01-01)
    "invalid_key",  # message key is not UTF-8 text (the contract keys by device_id)
    "unknown_topic",  # record from a topic without a contract
    "db_rejected",  # the validator let it through but PostgreSQL refused the row
    "sink_error",  # landing the record failed for a reason of its own outside PostgreSQL
    "unprocessable",  # the consumer could not process the record (an unforeseen error)
)

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
LongText = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
# v0 devices send integer ids (the guide's producer) or text
DeviceIdV0 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | Text

EventType = Literal["open", "close", "fail"]
TriggerSource = Literal["app", "keypad", "remote", "schedule", "voice", "auto_close"]
FailureReason = Literal["obstruction", "sensor_fault", "motor_stall", "low_battery", "connectivity"]
DeviceType = Literal["garage_door", "gate", "smart_lock"]
DeviceStatus = Literal["active", "retired"]

_TIMEZONES: Final = frozenset(available_timezones())


class AccessEvent(msgspec.Struct, kw_only=True):
    """An open, close or failed attempt on a device (`smart-access.events`)."""

    schema_version: Literal[1]
    event_id: uuid.UUID
    device_id: Text
    household_id: Text
    event_ts: Timestamp
    event_type: EventType
    trigger_source: TriggerSource
    user_id: Text | None = None
    failure_reason: FailureReason | None = None

    def __post_init__(self) -> None:
        if self.event_type == "fail" and self.failure_reason is None:
            raise ValueError("failure_reason is required when event_type is 'fail'")
        if self.event_type != "fail" and self.failure_reason is not None:
            raise ValueError("failure_reason is only allowed when event_type is 'fail'")


class HealthReport(msgspec.Struct, kw_only=True):
    """A periodic health report of a device (`smart-access.health`)."""

    schema_version: Literal[1]
    device_id: Text
    reported_at: Timestamp
    battery_pct: Annotated[int, msgspec.Meta(ge=0, le=100)]
    signal_strength_dbm: Annotated[int, msgspec.Meta(ge=-120, le=0)]
    is_online: bool
    firmware_version: Text
    temperature_c: Annotated[float, msgspec.Meta(ge=-80, le=150)] | None = None


class DeviceRegistration(msgspec.Struct, kw_only=True):
    """A device registry change (`smart-access.devices`, compacted by device_id)."""

    schema_version: Literal[1]
    device_id: Text
    household_id: Text
    device_type: DeviceType
    model: Text
    firmware_version: Text
    installed_at: Timestamp
    status: DeviceStatus
    updated_at: Timestamp
    region: Text | None = None
    timezone: Text | None = None

    def __post_init__(self) -> None:
        if self.timezone is not None and self.timezone not in _TIMEZONES:
            raise ValueError(f"timezone {self.timezone!r} is not an IANA time zone")


class AccessEventV0(msgspec.Struct, kw_only=True):
    """An access event in the original guide's format (`smart-access.events`, v0)."""

    event_id: Text
    device_id: DeviceIdV0
    event_ts: datetime  # without an offset it is UTC (the guide's producer sends UTC)
    event_type: Literal["open", "close", "fail", "command_failed"]
    trigger_source: Literal["app", "button", "remote", "voice"]
    schema_version: Literal[0] = 0


# Namespace of the name-based UUIDs given to v0 event ids (uuid5 of "<device>:<event id>").
V0_EVENT_NAMESPACE: Final = uuid.UUID("6f3c1b1e-5a0e-4c1a-9a57-0d5a1e2b7c01")


def v0_event_uuid(device_id: int | str, event_id: str) -> uuid.UUID:
    """The v1 event_id of a v0 event: the same device and event id give the same UUID."""
    return uuid.uuid5(V0_EVENT_NAMESPACE, f"{device_id}:{event_id}")


class HealthReportV0(msgspec.Struct, kw_only=True):
    """A health report in the original guide's format (`smart-access.health`, v0)."""

    device_id: DeviceIdV0
    reported_at: datetime  # without an offset it is UTC
    battery_pct: Annotated[int, msgspec.Meta(ge=0, le=100)]
    signal_strength_dbm: Annotated[int, msgspec.Meta(ge=-120, le=0)]
    is_online: bool
    schema_version: Literal[0] = 0


@dataclass(frozen=True, slots=True)
class DeviceRemoval:
    """A tombstone (null value) on the compacted registry topic: the device is removed."""

    device_id: str
    removed_at: datetime


Contract = AccessEvent | HealthReport | DeviceRegistration | AccessEventV0 | HealthReportV0

CONTRACTS: Final[dict[str, type[Contract]]] = {
    EVENTS: AccessEvent,
    HEALTH: HealthReport,
    DEVICES: DeviceRegistration,
}
CONTRACTS_V0: Final[dict[str, type[Contract]]] = {EVENTS: AccessEventV0, HEALTH: HealthReportV0}
SCHEMA_FILES: Final = {
    AccessEvent: "access_event.v1.json",
    HealthReport: "health_report.v1.json",
    DeviceRegistration: "device_registration.v1.json",
    AccessEventV0: "access_event.v0.json",
    HealthReportV0: "health_report.v0.json",
}
# Fields whose value is a moment the device claims; checked against clock skew.
_TIME_FIELDS: Final = {
    AccessEvent: ("event_ts",),
    HealthReport: ("reported_at",),
    DeviceRegistration: ("installed_at", "updated_at"),
    AccessEventV0: ("event_ts",),
    HealthReportV0: ("reported_at",),
}
_TEXT_FIELDS: Final = {
    cls: tuple(
        name
        for name, hint in cls.__annotations__.items()
        if any(word in str(hint) for word in ("Text", "Reason", "DeviceIdV0"))
    )
    for cls in (*CONTRACTS.values(), *CONTRACTS_V0.values())
}


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a record cannot land: one of ERROR_KINDS and a human-readable detail."""

    kind: str
    detail: str


_PATH = re.compile(r" - at `(?P<path>[^`]+)`$")


def _classify(message: str) -> str:
    text = _PATH.sub("", message)
    if text.startswith("Object missing required field"):
        return "missing_field"
    if text.startswith("Invalid enum value"):
        return "out_of_domain"
    if text.startswith("Expected `object`, got") and " - at " not in message:
        return "not_an_object"
    if re.match(r"Expected `\w+`, got `\w+`", text):
        return "wrong_type"
    if re.search(r"Expected `(int|float|str)` (<|>|of length)", text) or "out of range" in text:
        return "out_of_range"
    if text.startswith(("Invalid UUID", "Invalid RFC3339", "Expected `datetime` with")):
        return "invalid_format"
    if text.startswith(("Expected `int` == ", "Invalid value")):
        return "out_of_domain"
    if "is not an IANA time zone" in text or "failure_reason" in text:
        return "rule_violation"
    return "wrong_type"


class _VersionProbe(msgspec.Struct):
    schema_version: Any = None


_probe_version = msgspec.json.Decoder(_VersionProbe).decode


def _declared_version(value: bytes) -> Any:
    """The `schema_version` a message declares (failure path only; None if unreadable)."""
    try:
        return _probe_version(value).schema_version
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def _kind(message: str, value: bytes) -> str:
    kind = _classify(message)
    if kind == "not_an_object" and nesting_depth(value) > 32:
        return "too_deep"
    return kind


def nesting_depth(value: bytes, stop: int | None = None) -> int:
    """Maximum bracket depth of JSON bytes outside strings; counting ends early once it
    passes `stop`. Cheap enough for the failure path and for bounded previews."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in value:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop is not None and deepest > stop:
                    break
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return deepest


class Validator:
    """Decode and validate records of the three data topics.

    `validate` returns a contract struct or an `Invalid`; it never raises for bad
    input, and accepts nothing PostgreSQL would refuse to store. `max_bytes` caps a
    payload's size, `max_skew` how far in the future a device clock may run and
    `min_timestamp` how far in the past (older moments are `implausible_timestamp`).
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        min_timestamp: datetime = DEFAULT_MIN_TIMESTAMP,
    ) -> None:
        if min_timestamp.tzinfo is None:
            raise ValueError("min_timestamp must carry a time zone")
        self.max_bytes = max_bytes
        self.max_skew = max_skew
        self.min_timestamp = min_timestamp
        self._decoders = {topic: msgspec.json.Decoder(cls) for topic, cls in CONTRACTS.items()}
        self._decoders_v0 = {
            topic: msgspec.json.Decoder(cls) for topic, cls in CONTRACTS_V0.items()
        }

    def validate(self, topic: str, value: bytes | None, now: datetime) -> Contract | Invalid:
        decoder = self._decoders.get(topic)
        if decoder is None:
            return Invalid("unknown_topic", f"no contract for topic {topic!r}")
        if value is None:
            return Invalid("not_json", "record has no value (tombstone or empty message)")
        if len(value) > self.max_bytes:
            return Invalid("too_large", f"{len(value)} bytes, limit is {self.max_bytes}")
        v0 = self._decoders_v0.get(topic)
        if v0 is not None and b'"schema_version"' not in value:
            return self.validate_v0(topic, value, now)  # the original guide's format
        try:
            record: Contract = decoder.decode(value)
        except msgspec.ValidationError as exc:
            message = str(exc)
            if v0 is not None and message.startswith(
                "Object missing required field `schema_version`"
            ):
                return self.validate_v0(topic, value, now)
            version = _declared_version(value)
            if version == 0 and v0 is not None:
                return self.validate_v0(topic, value, now)
            if version is not None and version not in (0, 1):
                return Invalid(
                    "out_of_domain",
                    f"unknown schema_version {version!r}: this topic takes 1, or no "
                    "schema_version for the original guide's format (v0)",
                )
            return Invalid(_kind(message, value), message)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return self._undecodable(value, exc)
        return self._checked(record, value, now)

    def validate_v0(self, topic: str, value: bytes, now: datetime) -> Contract | Invalid:
        """`value` decoded as the guide's format (v0) and checked like any record."""
        try:
            record: Contract = self._decoders_v0[topic].decode(value)
        except msgspec.ValidationError as exc:
            message = str(exc)
            return Invalid(_kind(message, value), f"{message} (without schema_version it is v0)")
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return self._undecodable(value, exc)
        return self._checked(record, value, now)

    def _checked(self, record: Contract, value: bytes, now: datetime) -> Contract | Invalid:
        if b"\\u0000" in value:
            cls = type(record)
            for name in _TEXT_FIELDS[cls]:
                text = getattr(record, name)
                if isinstance(text, str) and "\x00" in text:
                    return Invalid("nul_character", f"field {name} contains U+0000")
        limit = now + self.max_skew
        for name in _TIME_FIELDS[type(record)]:
            moment = getattr(record, name)
            if moment.tzinfo is None:  # only v0 can carry one: it is UTC
                moment = moment.replace(tzinfo=UTC)
                setattr(record, name, moment)
            offset = moment.utcoffset()
            if offset is not None and abs(offset) > MAX_UTC_OFFSET:
                return Invalid(
                    "out_of_range",
                    f"{name} has the UTC offset {_offset_text(offset)}; PostgreSQL stores "
                    "offsets up to ±15:59 (send UTC, e.g. ...Z)",
                )
            if moment < self.min_timestamp:
                return Invalid(
                    "implausible_timestamp",
                    f"{name} {moment.isoformat()} is before {self.min_timestamp.isoformat()} "
                    "(a device clock that was never set?)",
                )
            if moment > limit:
                return Invalid(
                    "future_timestamp",
                    f"{name} {moment.isoformat()} is more than {self.max_skew} ahead of "
                    f"{now.isoformat()}",
                )
        return record

    @staticmethod
    def _undecodable(value: bytes, exc: Exception) -> Invalid:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as err:
            return Invalid("not_utf8", f"invalid UTF-8 at byte {err.start}")
        if isinstance(exc, RecursionError) or nesting_depth(value) > 32:
            return Invalid("too_deep", f"JSON nested deeper than the decoder allows ({exc})")
        if isinstance(exc, UnicodeDecodeError):
            return Invalid("not_utf8", str(exc))
        return Invalid("not_json", str(exc))


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema (2020-12) of each contract, keyed by its file name."""
    schemas: dict[str, dict[str, Any]] = {}
    for cls, filename in SCHEMA_FILES.items():
        body = msgspec.json.schema(cls)
        definition = body["$defs"][cls.__name__]
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://smart-access.example/schemas/{filename}",
            **definition,
            "description": (cls.__doc__ or "").strip(),
        }
        schemas[filename] = schema
    return schemas


def render_schema(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streaming.contracts",
        description="Write or check the JSON Schemas generated from the event contracts.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite streaming/schemas/*.json")
    args = parser.parse_args(argv)
    stale = []
    for filename, schema in json_schemas().items():
        path = SCHEMA_DIR / filename
        text = render_schema(schema)
        if args.write:
            SCHEMA_DIR.mkdir(exist_ok=True)
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            stale.append(filename)
    if stale:
        print(
            f"stale schemas: {', '.join(stale)}; run python -m streaming.contracts --write",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
