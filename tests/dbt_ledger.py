"""A small deterministic device ledger for the dbt tests and benchmark.

`Ledger` simulates households, devices and their streams the way the consumer lands
them in raw.*: unique Kafka coordinates per topic partition, realistic
`_ingested_at` (a second or two after the event), late events, re-sent duplicates,
doors left open, failure bursts, low batteries, devices that go quiet, and registry
changes (firmware rollouts, retirement). It records every raw row it produced so an
independent recomputation (tests/dbt_truth.py) can say what the marts must contain.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg2
import psycopg2.extras

from streaming.contracts import v0_event_uuid

EVENTS_TOPIC = "smart-access.events"
HEALTH_TOPIC = "smart-access.health"
DEVICES_TOPIC = "smart-access.devices"
PARTITIONS = {EVENTS_TOPIC: 6, HEALTH_TOPIC: 6, DEVICES_TOPIC: 3}

TRIGGERS = ["app", "keypad", "remote", "schedule", "voice"]
# what a v0 device calls a v1 trigger source (the guide knows app, button, remote, voice)
V0_TRIGGERS = {"keypad": "button", "schedule": "app", "auto_close": "remote"}
FAILURE_REASONS = ["obstruction", "sensor_fault", "motor_stall", "low_battery", "connectivity"]
DEVICE_TYPES = ["garage_door", "gate", "smart_lock"]
MODELS = {"garage_door": ["GD-100", "GD-200"], "gate": ["GT-10"], "smart_lock": ["SL-1", "SL-2"]}
REGIONS = ["north", "south", "east", "west"]
TIMEZONES = ["Europe/Berlin", "Europe/London", "America/New_York"]

EVENT_COLUMNS = [
    "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "kafka_key",
    "schema_version", "event_id", "device_id", "household_id", "event_ts", "event_type",
    "trigger_source", "user_id", "failure_reason", "source_event_id", "_ingested_at",
]  # fmt: skip
HEALTH_COLUMNS = [
    "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "kafka_key",
    "schema_version", "device_id", "reported_at", "battery_pct", "signal_strength_dbm",
    "is_online", "firmware_version", "temperature_c", "_ingested_at",
]  # fmt: skip
REGISTRY_COLUMNS = [
    "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "kafka_key",
    "schema_version", "device_id", "household_id", "device_type", "model",
    "firmware_version", "installed_at", "status", "updated_at", "region", "timezone",
    "_ingested_at",
]  # fmt: skip


@dataclass
class Device:
    device_id: str
    household_id: str
    device_type: str
    model: str
    firmware_version: str
    region: str | None
    timezone: str | None
    installed_at: datetime
    status: str = "active"
    battery: float = 90.0
    door_open: bool = False
    v0: bool = False  # sends its events in the original guide's format (contract v0)


@dataclass
class Ledger:
    seed: int = 7
    rng: random.Random = field(init=False)
    devices: dict[str, Device] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    health: list[dict] = field(default_factory=list)
    registry: list[dict] = field(default_factory=list)
    _offsets: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    _pending: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @contextmanager
    def own_stream(self, seed: int) -> Iterator[None]:
        """Draw from a random stream of its own inside the block: rows added there
        leave every later draw of the scenario as it was."""
        shared, self.rng = self.rng, random.Random(seed)
        try:
            yield
        finally:
            self.rng = shared

    # --- rows -------------------------------------------------------------------
    def _coordinates(self, topic: str, key: str) -> dict:
        partition = sum(key.encode()) % PARTITIONS[topic]
        offset = self._offsets[(topic, partition)]
        self._offsets[(topic, partition)] = offset + 1
        return {
            "kafka_topic": topic,
            "kafka_partition": partition,
            "kafka_offset": offset,
            "kafka_key": key,
        }

    def _land(self, topic: str, row: dict, ingested_at: datetime) -> dict:
        row = {"schema_version": 1, **row, "_ingested_at": ingested_at}
        row["kafka_timestamp"] = ingested_at - timedelta(milliseconds=200)
        self._pending[topic].append(row)
        return row

    def register(self, device: Device, updated_at: datetime, ingested_at: datetime) -> None:
        self.devices[device.device_id] = device
        self._land(
            DEVICES_TOPIC,
            {
                "device_id": device.device_id,
                "household_id": device.household_id,
                "device_type": device.device_type,
                "model": device.model,
                "firmware_version": device.firmware_version,
                "installed_at": device.installed_at,
                "status": device.status,
                "updated_at": updated_at,
                "region": device.region,
                "timezone": device.timezone,
            },
            ingested_at,
        )

    def event(
        self,
        device: Device,
        at: datetime,
        event_type: str,
        *,
        ingested_at: datetime | None = None,
        trigger: str | None = None,
    ) -> dict:
        if trigger is None:
            trigger = (
                "auto_close"
                if event_type == "close" and self.rng.random() < 0.2
                else (self.rng.choice(TRIGGERS))
            )
        row = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "device_id": device.device_id,
            "household_id": device.household_id,
            "event_ts": at,
            "event_type": event_type,
            "trigger_source": trigger,
            "user_id": f"user-{self.rng.randint(1, 30)}" if trigger in ("app", "voice") else None,
            "failure_reason": self.rng.choice(FAILURE_REASONS) if event_type == "fail" else None,
        }
        if device.v0:  # as the consumer lands the guide's format
            source_event_id = f"{device.device_id}-{int(at.timestamp() * 1000)}"
            row = {
                **row,
                "schema_version": 0,
                "event_id": str(v0_event_uuid(device.device_id, source_event_id)),
                "source_event_id": source_event_id,
                "household_id": None,
                "event_type": "command_failed" if event_type == "fail" else event_type,
                "trigger_source": V0_TRIGGERS.get(trigger, trigger),
                "user_id": None,
                "failure_reason": None,
            }
        landed = ingested_at or at + timedelta(milliseconds=self.rng.randint(150, 2500))
        return self._land(EVENTS_TOPIC, row, landed)

    def remove(self, device: Device, at: datetime, ingested_at: datetime) -> None:
        """A tombstone on the registry topic: lands as status 'removed', ids only."""
        self._land(
            DEVICES_TOPIC,
            {"device_id": device.device_id, "status": "removed", "updated_at": at},
            ingested_at,
        )

    def resend(self, row: dict, ingested_at: datetime) -> None:
        """The same event again (a producer retry): same payload, new coordinates."""
        payload = {k: v for k, v in row.items() if not k.startswith(("kafka_", "_"))}
        self._land(EVENTS_TOPIC, payload, ingested_at)

    def report(
        self,
        device: Device,
        at: datetime,
        *,
        battery: int | None = None,
        online: bool = True,
        signal: int | None = None,
        ingested_at: datetime | None = None,
    ) -> dict:
        row = {
            "device_id": device.device_id,
            "reported_at": at,
            "battery_pct": round(device.battery) if battery is None else battery,
            "signal_strength_dbm": self.rng.randint(-95, -55) if signal is None else signal,
            "is_online": online,
            "firmware_version": device.firmware_version,
            "temperature_c": round(self.rng.uniform(-5, 35), 1),
        }
        landed = ingested_at or at + timedelta(milliseconds=self.rng.randint(150, 2500))
        return self._land(HEALTH_TOPIC, row, landed)

    # --- bulk behaviour -----------------------------------------------------------
    def door_activity(self, device: Device, start: datetime, end: datetime) -> None:
        """Opens and closes with realistic gaps; a few doors left open, some failures."""
        at = start + timedelta(seconds=self.rng.randint(5, 200))
        while at < end:
            if device.door_open:
                self.event(device, at, "close")
                device.door_open = False
                at += timedelta(seconds=self.rng.randint(60, 600))
                continue
            roll = self.rng.random()
            if roll < 0.05:
                self.event(device, at, "fail")
                at += timedelta(seconds=self.rng.randint(20, 120))
                continue
            self.event(device, at, "open")
            device.door_open = True
            if roll > 0.97:  # left open
                at += timedelta(minutes=self.rng.randint(12, 40))
            else:
                at += timedelta(seconds=self.rng.randint(20, 240))

    def health_reports(
        self, device: Device, start: datetime, end: datetime, *, every_minutes: int = 5
    ) -> None:
        at = start + timedelta(seconds=self.rng.randint(0, 59))
        while at < end:
            device.battery = max(0.0, device.battery - self.rng.uniform(0.0, 0.6))
            self.report(device, at)
            at += timedelta(minutes=every_minutes, seconds=self.rng.randint(-20, 20))

    # --- landing --------------------------------------------------------------------
    def flush(
        self,
        conn: psycopg2.extensions.connection,
        *,
        commit: bool = True,
        stamp_with_clock: bool = False,
    ) -> dict[str, int]:
        """Insert what was produced since the last flush, in ingestion order per topic.

        stamp_with_clock: let the database stamp `_ingested_at` (clock_timestamp(), as
        the consumer does) and record the stamps it gave. commit=False leaves the
        transaction open - a slow loader batch - for the caller to commit.
        """
        counts = {}
        targets = [
            (EVENTS_TOPIC, "raw.access_events", EVENT_COLUMNS, self.events),
            (HEALTH_TOPIC, "raw.device_health", HEALTH_COLUMNS, self.health),
            (DEVICES_TOPIC, "raw.device_registry", REGISTRY_COLUMNS, self.registry),
        ]
        cur = conn.cursor()
        try:
            for topic, table, columns, store in targets:
                rows = sorted(self._pending.pop(topic, []), key=lambda r: r["_ingested_at"])
                for row in rows:
                    row.update(self._coordinates(topic, row.get("device_id", "")))
                store.extend(rows)
                if rows and stamp_with_clock:
                    landed = [c for c in columns if c != "_ingested_at"]
                    for row in rows:  # one statement each: every row its own clock stamp
                        cur.execute(
                            f"insert into {table} ({', '.join(landed)})"
                            f" values ({', '.join(['%s'] * len(landed))}) returning _ingested_at",
                            [row.get(c) for c in landed],
                        )
                        row["_ingested_at"] = cur.fetchone()[0]
                elif rows:
                    psycopg2.extras.execute_values(
                        cur,
                        f"insert into {table} ({', '.join(columns)}) values %s",
                        [tuple(row.get(c) for c in columns) for row in rows],
                        page_size=5000,
                    )
                counts[table] = len(rows)
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()
        if commit:
            conn.commit()
        return counts


def build_fleet(ledger: Ledger, at: datetime, count: int = 36) -> list[Device]:
    """Devices in households of one to three devices; a few without region/timezone."""
    devices = []
    household = 0
    while len(devices) < count:
        household += 1
        region = ledger.rng.choice(REGIONS) if household % 7 else None
        timezone = ledger.rng.choice(TIMEZONES) if region else None
        for _ in range(ledger.rng.randint(1, 3)):
            device_type = ledger.rng.choice(DEVICE_TYPES)
            device = Device(
                device_id=f"dev-{len(devices) + 1:04d}",
                household_id=f"hh-{household:03d}",
                device_type=device_type,
                model=ledger.rng.choice(MODELS[device_type]),
                firmware_version="1.4.0",
                region=region,
                timezone=timezone,
                installed_at=at - timedelta(days=ledger.rng.randint(30, 400)),
                battery=ledger.rng.uniform(40, 100),
            )
            ledger.register(device, updated_at=at - timedelta(days=1), ingested_at=at)
            devices.append(device)
    return devices


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def table_rows(cur, sql: str, params: Iterable | None = None) -> list[tuple]:
    cur.execute(sql, params)
    return cur.fetchall()
