"""A believable fleet of smart-access devices, deterministic for a given seed.

Households live in a handful of regions with real time zones; each has a few
devices (garage doors, gates, smart locks) of real-sounding models. Access events
follow a daily rhythm in the household's local time, opens are followed by closes
after a realistic, type-dependent time (some doors are left open for hours),
failures are likelier with a low battery or a weak signal, batteries drain and get
replaced, every device reports its health about every 30 s, registry records are
sent at start and firmware rollouts send new ones now and then.

The simulated clock advances 1/rate seconds per message from `start`, so the same
seed, rate and start give byte-identical messages. `Truth` says what each message
is (valid or which kind of invalid, duplicate of which, how late): the ground
truth tests reconcile against.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import msgspec

from streaming.contracts import AccessEvent, DeviceRegistration, HealthReport
from streaming.topics import DEVICES, EVENTS, HEALTH

__all__ = ["REGIONS", "Message", "Simulator", "SimulatorConfig", "Truth"]

REGIONS: Final = (
    ("us-east", "America/New_York"),
    ("us-west", "America/Los_Angeles"),
    ("uk", "Europe/London"),
    ("eu-central", "Europe/Berlin"),
    ("jp", "Asia/Tokyo"),
    ("au-east", "Australia/Sydney"),
)
MODELS: Final = {
    "garage_door": ("LiftMaster 8500W", "Chamberlain B970", "Genie StealthDrive 750"),
    "gate": ("Nice Robus 600", "FAAC 740", "BFT Deimos Ultra"),
    "smart_lock": ("Yale Assure Lock 2", "August Wi-Fi Smart Lock", "Nuki Smart Lock 4"),
}
# Median seconds a device stays open before it closes, per type.
OPEN_SECONDS: Final = {"garage_door": 90.0, "gate": 40.0, "smart_lock": 12.0}
# Relative activity per local hour: quiet nights, a morning and an evening peak.
HOURLY: Final = (
    0.05, 0.03, 0.02, 0.02, 0.03, 0.1, 0.5, 1.4, 1.6, 0.9, 0.6, 0.6,
    0.8, 0.7, 0.6, 0.7, 1.0, 1.6, 1.9, 1.4, 0.9, 0.6, 0.3, 0.12,
)  # fmt: skip
HEALTH_EVERY: Final = 30.0
INVALID_KINDS: Final = (
    "not_json",
    "not_utf8",
    "missing_field",
    "wrong_type",
    "out_of_domain",
    "out_of_range",
    "nul_character",
    "future_timestamp",
)

_encode = msgspec.json.Encoder().encode
# v1 trigger sources the guide's devices name differently (v0 knows app, button,
# remote, voice): a keypad is the device's own button; schedules and auto-close run
# in the device's app and controller
_V0_TRIGGERS: Final = {"keypad": "button", "schedule": "app", "auto_close": "remote"}


@dataclass(frozen=True)
class SimulatorConfig:
    households: int = 100
    devices_per_household: int = 3
    rate: float = 50.0
    seed: int = 42
    invalid_ratio: float = 0.0
    duplicate_ratio: float = 0.0
    late_ratio: float = 0.0
    max_lateness: float = 3600.0
    start: datetime | None = None
    # "v1": the platform's contracts; "v0": the original guide's format (integer device
    # ids, no schema_version, household, firmware or registry topic, naive UTC times)
    format: str = "v1"


@dataclass
class Device:
    device_id: str
    household_id: str
    region: str
    timezone: ZoneInfo
    tz_name: str
    device_type: str
    model: str
    firmware: str
    installed_at: datetime
    activity: float
    signal_base: int
    battery: float
    is_open: bool = False
    close_seq: int = -1  # the scheduled close of the current opening (-1: none)


@dataclass(frozen=True)
class Truth:
    seq: int
    kind: str  # access_event | health_report | registry
    valid: bool
    invalid_kind: str | None = None
    duplicate_of: int | None = None
    lateness_s: float = 0.0
    event_id: str | None = None


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes
    truth: Truth
    timestamp: datetime

    def ledger_line(self, **extra: object) -> str:
        body = {
            "seq": self.truth.seq,
            "topic": self.topic,
            "key": self.key.decode("utf-8", "replace"),
            "kind": self.truth.kind,
            "valid": self.truth.valid,
            "invalid_kind": self.truth.invalid_kind,
            "duplicate_of": self.truth.duplicate_of,
            "lateness_s": round(self.truth.lateness_s, 3),
            "event_id": self.truth.event_id,
            "sent_at": self.timestamp.isoformat(),
            **extra,
        }
        return json.dumps(body, ensure_ascii=False)


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    action: str = field(compare=False)
    device: int = field(compare=False)


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.v0 = config.format == "v0"
        self.rng = random.Random(config.seed)  # noqa: S311 - a simulation, not security
        start = config.start or datetime.now(UTC).replace(microsecond=0)
        self.start = start.astimezone(UTC)
        self.clock = 0.0  # simulated seconds since start
        self.seq = 0
        self._due: list[_Due] = []
        self._due_seq = 0
        self._recent_events: list[tuple[int, bytes, bytes, str]] = []
        self.devices = self._build_fleet()
        self._pending: list[Message] = (
            [] if self.v0 else [self._registration(i) for i in range(len(self.devices))]
        )
        for index in range(len(self.devices)):
            self._schedule(self.rng.uniform(0, HEALTH_EVERY), "health", index)
        self._schedule(self.rng.uniform(600, 1800), "rollout", -1)

    # --- fleet ------------------------------------------------------------------
    def _build_fleet(self) -> list[Device]:
        rng = self.rng
        devices = []
        for h in range(self.config.households):
            region, tz_name = REGIONS[rng.randrange(len(REGIONS))]
            household = f"hh-{h:05d}"
            types = ["garage_door", "gate", "smart_lock"]
            rng.shuffle(types)
            for d in range(self.config.devices_per_household):
                device_type = types[d % 3] if d < 3 else rng.choice(types)
                major = rng.randint(1, 3)
                number = h * self.config.devices_per_household + d + 1
                devices.append(
                    Device(
                        device_id=str(number) if self.v0 else f"dev-{h:05d}-{d}",
                        household_id=household,
                        region=region,
                        timezone=ZoneInfo(tz_name),
                        tz_name=tz_name,
                        device_type=device_type,
                        model=rng.choice(MODELS[device_type]),
                        firmware=f"{major}.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
                        installed_at=self.start - timedelta(days=rng.randint(30, 1500)),
                        activity=rng.lognormvariate(0, 0.6),
                        signal_base=rng.randint(-108, -45),
                        battery=rng.uniform(15, 100),
                    )
                )
        return devices

    def _schedule(self, at: float, action: str, device: int) -> int:
        self._due_seq += 1
        if len(self._due) > 4 * len(self.devices) + 16:
            # a door closed early (picked again while open) leaves its scheduled close
            # behind, up to hours ahead for a door left open: drop those, so the
            # schedule holds about one close and one report per device however long
            # the simulator runs
            self._due = [due for due in self._due if not self._stale(due)]
            heapq.heapify(self._due)
        heapq.heappush(self._due, _Due(at, self._due_seq, action, device))
        return self._due_seq

    def _stale(self, due: _Due) -> bool:
        return due.action == "close" and self.devices[due.device].close_seq != due.seq

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.clock)

    # --- messages ---------------------------------------------------------------
    def next(self) -> Message:
        """The next message; advances the simulated clock by 1/rate."""
        if self._pending:
            return self._finish(self._pending.pop(0))
        self.clock += 1.0 / self.config.rate if self.config.rate > 0 else 0.001
        while self._due and self._stale(self._due[0]):  # that opening was closed already
            heapq.heappop(self._due)
        if self._due and self._due[0].at <= self.clock:
            due = heapq.heappop(self._due)
            if due.action == "health":
                self._schedule(
                    self.clock + HEALTH_EVERY * self.rng.uniform(0.9, 1.1), "health", due.device
                )
                return self._finish(self._health(due.device))
            if due.action == "close":
                return self._finish(self._access(due.device, "close"))
            if due.action == "rollout":
                self._rollout()
                self._schedule(self.clock + self.rng.uniform(1800, 7200), "rollout", -1)
                return self.next()
        cfg = self.config
        if self._recent_events and self.rng.random() < cfg.duplicate_ratio:
            seq, key, value, event_id = self.rng.choice(self._recent_events)
            truth = Truth(self.seq, "access_event", True, duplicate_of=seq, event_id=event_id)
            return self._emit(Message(EVENTS, key, value, truth, self.now()))
        return self._finish(self._access(self._pick_device(), None))

    def _finish(self, message: Message) -> Message:
        if self.rng.random() < self.config.invalid_ratio:
            message = self._corrupt(message)
        return self._emit(message)

    def _emit(self, message: Message) -> Message:
        message = Message(
            message.topic,
            message.key,
            message.value,
            Truth(**{**message.truth.__dict__, "seq": self.seq}),
            message.timestamp,
        )
        truth = message.truth
        if truth.kind == "access_event" and truth.valid and truth.duplicate_of is None:
            self._recent_events.append((self.seq, message.key, message.value, truth.event_id or ""))
            if len(self._recent_events) > 1000:
                del self._recent_events[:500]
        self.seq += 1
        return message

    def _pick_device(self) -> int:
        now = self.now()
        for _ in range(20):
            index = self.rng.randrange(len(self.devices))
            device = self.devices[index]
            weight = device.activity * HOURLY[now.astimezone(device.timezone).hour] / 2.0
            if not device.is_open and self.rng.random() < min(1.0, weight):
                return index
        return self.rng.randrange(len(self.devices))

    def _access(self, index: int, forced: str | None) -> Message:
        device = self.devices[index]
        rng = self.rng
        now = self.now()
        device.battery -= rng.uniform(0.005, 0.03)
        signal = device.signal_base + rng.randint(-6, 6)
        if forced == "close" or device.is_open:
            event_type = "close"
        else:
            p_fail = 0.01 + (0.2 if device.battery < 15 else 0) + (0.12 if signal < -95 else 0)
            event_type = "fail" if rng.random() < p_fail else "open"
        failure_reason = None
        if event_type == "fail":
            if device.battery < 15 and rng.random() < 0.7:
                failure_reason = "low_battery"
            elif signal < -95 and rng.random() < 0.7:
                failure_reason = "connectivity"
            else:
                failure_reason = rng.choice(("obstruction", "sensor_fault", "motor_stall"))
        if event_type == "close":
            device.is_open = False
            device.close_seq = -1
            trigger = rng.choice(("app", "remote", "keypad", "auto_close", "auto_close"))
        else:
            trigger = rng.choice(("app", "app", "keypad", "remote", "schedule", "voice"))
        if event_type == "open":
            device.is_open = True
            if rng.random() < 0.03:  # left open
                hold = rng.uniform(3600, 6 * 3600)
            else:
                hold = rng.lognormvariate(math.log(OPEN_SECONDS[device.device_type]), 0.5)
            device.close_seq = self._schedule(self.clock + hold, "close", index)
        user = None
        if trigger in ("app", "keypad", "voice"):
            user = f"{device.household_id}-u{rng.randint(1, 4)}"
        lateness = 0.0
        if forced is None and rng.random() < self.config.late_ratio:
            lateness = rng.uniform(1, self.config.max_lateness)
        event_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        if self.v0:
            return self._access_v0(device, event_type, trigger, now, lateness)
        event = AccessEvent(
            schema_version=1,
            event_id=event_id,
            device_id=device.device_id,
            household_id=device.household_id,
            event_ts=now - timedelta(seconds=lateness),
            event_type=event_type,  # type: ignore[arg-type]
            trigger_source=trigger,  # type: ignore[arg-type]
            user_id=user,
            failure_reason=failure_reason,  # type: ignore[arg-type]
        )
        truth = Truth(0, "access_event", True, lateness_s=lateness, event_id=str(event_id))
        return Message(EVENTS, device.device_id.encode(), _encode(event), truth, now)

    def _access_v0(
        self, device: Device, event_type: str, trigger: str, now: datetime, lateness: float
    ) -> Message:
        """The guide's producer's shape: integer device id, '<device>-<epoch ms>' event id,
        naive UTC timestamp, command_failed for a failure, button for a local press."""
        moment = now - timedelta(seconds=lateness)
        millis = int(moment.timestamp() * 1000)
        body = {
            "event_id": f"{device.device_id}-{millis}",
            "device_id": int(device.device_id),
            "event_ts": moment.astimezone(UTC).replace(tzinfo=None).isoformat(),
            "event_type": "command_failed" if event_type == "fail" else event_type,
            "trigger_source": _V0_TRIGGERS.get(trigger, trigger),
        }
        truth = Truth(0, "access_event", True, lateness_s=lateness, event_id=str(body["event_id"]))
        return Message(EVENTS, device.device_id.encode(), json.dumps(body).encode(), truth, now)

    def _health(self, index: int) -> Message:
        device = self.devices[index]
        rng = self.rng
        device.battery -= rng.uniform(0.01, 0.05)
        if device.battery < 3:
            device.battery = 100.0  # replaced
        signal = max(-120, min(0, device.signal_base + rng.randint(-8, 8)))
        report = HealthReport(
            schema_version=1,
            device_id=device.device_id,
            reported_at=self.now(),
            battery_pct=int(max(0, min(100, device.battery))),
            signal_strength_dbm=signal,
            is_online=not (signal < -110 and rng.random() < 0.5),
            firmware_version=device.firmware,
            temperature_c=round(rng.gauss(18, 8), 1),
        )
        truth = Truth(0, "health_report", True)
        if self.v0:
            body = {
                "device_id": int(device.device_id),
                "reported_at": self.now().astimezone(UTC).replace(tzinfo=None).isoformat(),
                "battery_pct": report.battery_pct,
                "signal_strength_dbm": report.signal_strength_dbm,
                "is_online": report.is_online,
            }
            value = json.dumps(body).encode()
            return Message(HEALTH, device.device_id.encode(), value, truth, self.now())
        return Message(HEALTH, device.device_id.encode(), _encode(report), truth, self.now())

    def _registration(self, index: int) -> Message:
        device = self.devices[index]
        record = DeviceRegistration(
            schema_version=1,
            device_id=device.device_id,
            household_id=device.household_id,
            device_type=device.device_type,  # type: ignore[arg-type]
            model=device.model,
            firmware_version=device.firmware,
            installed_at=device.installed_at,
            status="active",
            updated_at=self.now(),
            region=device.region,
            timezone=device.tz_name,
        )
        truth = Truth(0, "registry", True)
        return Message(DEVICES, device.device_id.encode(), _encode(record), truth, self.now())

    def _rollout(self) -> None:
        model = self.rng.choice([m for models in MODELS.values() for m in models])
        targets = [i for i, d in enumerate(self.devices) if d.model == model]
        if not targets:
            return
        major = max(int(self.devices[i].firmware.split(".")[0]) for i in targets)
        version = f"{major}.{self.rng.randint(0, 9)}.{self.rng.randint(21, 40)}"
        for i in targets:
            if self.rng.random() < 0.8:
                self.devices[i].firmware = version
                if not self.v0:  # the guide has no registry topic
                    self._pending.append(self._registration(i))

    # --- invalid messages -----------------------------------------------------------
    def _corrupt(self, message: Message) -> Message:
        kind = self.rng.choice(INVALID_KINDS)
        body = json.loads(message.value)
        field_name = next(iter(k for k in body if k.endswith("_id") and k != "event_id"))
        if kind == "not_json":
            value = message.value[: len(message.value) // 2]
        elif kind == "not_utf8":
            value = message.value.replace(b'"schema_version"', b'"\xff\xfe"', 1)
            value = b"\xff" + value
        else:
            if kind == "missing_field":
                body.pop("device_id")
            elif kind == "wrong_type":
                body[field_name] = True if self.v0 else 12345  # v0 ids may be integers
            elif kind == "out_of_domain":
                body["schema_version"] = 99
            elif kind == "out_of_range":
                body[field_name] = "x" * 200
            elif kind == "nul_character":
                body[field_name] = str(body[field_name]) + "\u0000"
            elif kind == "future_timestamp":
                for name in ("event_ts", "reported_at", "updated_at"):
                    if name in body:
                        body[name] = (self.now() + timedelta(days=2)).isoformat()
            value = json.dumps(body).encode()
        truth = Truth(0, message.truth.kind, False, invalid_kind=kind)
        return Message(message.topic, message.key, value, truth, message.timestamp)
