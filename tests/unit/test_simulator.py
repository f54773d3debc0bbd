"""The simulated fleet is believable, deterministic, and honest about its truth flags."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from streaming.contracts import (
    AccessEvent,
    AccessEventV0,
    DeviceRegistration,
    HealthReportV0,
    Invalid,
    Validator,
)
from streaming.simulator import REGIONS, Simulator, SimulatorConfig
from streaming.topics import DEVICES, EVENTS, HEALTH

START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def run(n: int, **config: object) -> list:
    sim = Simulator(SimulatorConfig(start=START, **config))  # type: ignore[arg-type]
    return [sim.next() for _ in range(n)]


def test_same_seed_same_messages_and_other_seed_differs() -> None:
    a = [(m.topic, m.key, m.value) for m in run(3000, seed=5, invalid_ratio=0.1)]
    b = [(m.topic, m.key, m.value) for m in run(3000, seed=5, invalid_ratio=0.1)]
    c = [(m.topic, m.key, m.value) for m in run(3000, seed=6, invalid_ratio=0.1)]
    assert a == b and a != c


def test_fleet_shape_registry_and_health_cadence() -> None:
    messages = run(20_000, households=20, devices_per_household=3, rate=50, seed=1)
    validator = Validator()
    registry = [m for m in messages if m.topic == DEVICES]
    now = messages[-1].timestamp
    records = [validator.validate(DEVICES, m.value, now) for m in registry]
    assert all(isinstance(r, DeviceRegistration) for r in records)
    first = {r.device_id: r for r in records[:60]}  # type: ignore[union-attr]
    assert len(first) == 60
    assert {r.timezone for r in first.values()} <= {tz for _region, tz in REGIONS}
    assert all(r.region and r.timezone for r in first.values())
    assert {r.device_type for r in first.values()} == {"garage_door", "gate", "smart_lock"}
    # every device reports its health about every 30 s: 400 s simulated -> ~13 each
    health = Counter(m.key for m in messages if m.topic == HEALTH)
    assert len(health) == 60 and all(10 <= n <= 16 for n in health.values())


def test_opens_are_followed_by_closes_and_failures_carry_reasons() -> None:
    messages = run(30_000, households=50, rate=100, seed=2)
    now = messages[-1].timestamp
    events = [Validator().validate(EVENTS, m.value, now) for m in messages if m.topic == EVENTS]
    assert all(isinstance(e, AccessEvent) for e in events)
    per_device: dict[str, list[AccessEvent]] = {}
    for e in events:
        per_device.setdefault(e.device_id, []).append(e)  # type: ignore[union-attr]
    closes_after_open = opens = 0
    for seq in per_device.values():
        for prev, nxt in pairwise(seq):
            if prev.event_type == "open":
                opens += 1
                closes_after_open += nxt.event_type == "close"
    assert opens > 100 and closes_after_open / opens > 0.9
    kinds = Counter(e.event_type for e in events)  # type: ignore[union-attr]
    assert kinds["fail"] > 0
    assert all(e.failure_reason for e in events if e.event_type == "fail")  # type: ignore[union-attr]


def test_daily_rhythm_follows_local_time() -> None:
    # one simulated day at a low rate: local nights are quieter than local evenings
    # a bit over one simulated day (9 devices, 1 message/s): at any moment some
    # households are in their evening and others asleep
    messages = run(100_000, households=3, rate=1, seed=3)
    hours = Counter()
    tz_of = {}
    for m in messages:
        if m.topic == DEVICES:
            body = json.loads(m.value)
            tz_of[body["device_id"]] = ZoneInfo(body["timezone"])
    for m in messages:
        if m.topic == EVENTS:
            body = json.loads(m.value)
            if body["event_type"] == "open":
                local = m.timestamp.astimezone(tz_of[body["device_id"]])
                hours[local.hour] += 1
    night = sum(hours[h] for h in (1, 2, 3, 4))
    evening = sum(hours[h] for h in (17, 18, 19, 20))
    assert evening > 2 * night


def test_truth_flags_match_what_the_validator_says() -> None:
    messages = run(
        5000, seed=4, invalid_ratio=0.1, duplicate_ratio=0.05, late_ratio=0.1, max_lateness=600
    )
    validator = Validator()
    seen_ids: dict[bytes, int] = {}
    for m in messages:
        result = validator.validate(m.topic, m.value, m.timestamp)
        assert isinstance(result, Invalid) == (not m.truth.valid), m.truth
        if m.truth.duplicate_of is not None:
            assert m.value == messages[m.truth.duplicate_of].value
        elif isinstance(result, AccessEvent):
            lateness = (m.timestamp - result.event_ts).total_seconds()
            assert abs(lateness - m.truth.lateness_s) < 1e-3
            assert result.event_id.bytes not in seen_ids
            seen_ids[result.event_id.bytes] = m.truth.seq
    assert [m.truth.seq for m in messages] == list(range(len(messages)))
    assert sum(not m.truth.valid for m in messages) > 300
    assert sum(m.truth.duplicate_of is not None for m in messages) > 100
    assert max(m.truth.lateness_s for m in messages) <= 600


@pytest.mark.parametrize(
    "args",
    [
        ["--rate", "0"],
        ["--rate", "fast"],
        ["--invalid-ratio", "1.5"],
        ["--households", "0"],
        ["--start", "2026-01-01T00:00:00"],
        ["--no-such-flag"],
    ],
)
def test_bad_flags_are_one_line_exit_2(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streaming.producer", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr


def test_v0_format_is_the_guides_and_its_truth_matches_the_validator() -> None:
    messages = run(4000, seed=8, invalid_ratio=0.1, duplicate_ratio=0.05, format="v0")
    validator = Validator()
    kinds = set()
    for m in messages:
        result = validator.validate(m.topic, m.value, m.timestamp)
        if m.truth.valid:
            assert isinstance(result, AccessEventV0 | HealthReportV0), (m.value, result)
        else:
            assert isinstance(result, Invalid) and result.kind == m.truth.invalid_kind, (
                m.truth,
                result,
            )
        kinds.add(m.truth.invalid_kind)
    assert {m.topic for m in messages} == {EVENTS, HEALTH}  # the guide has no registry topic
    body = json.loads(next(m.value for m in messages if m.topic == EVENTS and m.truth.valid))
    assert set(body) == {"event_id", "device_id", "event_ts", "event_type", "trigger_source"}
    assert isinstance(body["device_id"], int) and "+" not in body["event_ts"]
    assert body["event_id"].startswith(f"{body['device_id']}-")
    triggers = {
        json.loads(m.value)["trigger_source"]
        for m in messages
        if m.topic == EVENTS and m.truth.valid
    }
    assert triggers <= {"app", "button", "remote", "voice"}
    types = {
        json.loads(m.value)["event_type"] for m in messages if m.topic == EVENTS and m.truth.valid
    }
    assert "command_failed" in types and "fail" not in types
    assert len(kinds) >= 8


def test_the_schedule_stays_bounded_however_long_it_runs() -> None:
    # at the stack's rate and ratios: doors left open for hours, then picked again and
    # closed early, must not leave their scheduled closes behind in the schedule
    config = SimulatorConfig(rate=2000, duplicate_ratio=0.005, late_ratio=0.01)
    sim = Simulator(config)
    sizes = []
    for _ in range(4):
        for _ in range(20_000):
            sim.next()
        sizes.append(len(sim._due))
    assert max(sizes) <= 4 * len(sim.devices) + 17, sizes


def test_a_door_closed_early_gets_no_second_close() -> None:
    sim = Simulator(SimulatorConfig(rate=2000, seed=7))
    state: dict[str, bool] = {}
    for _ in range(60_000):
        message = sim.next()
        if message.topic != EVENTS:
            continue
        body = json.loads(message.value)
        if body["event_type"] == "fail":
            continue
        # a close only ever follows an open of the same door
        if body["event_type"] == "close":
            assert state.get(body["device_id"]) is True, body
        state[body["device_id"]] = body["event_type"] == "open"
