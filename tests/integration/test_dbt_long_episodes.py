"""Alert episodes that outlast many builds are continued, not recomputed from their start.

Real PostgreSQL, real dbt. Three hours land an hour at a time, each followed by an
incremental build. One device fails every 100 s from the first minute on (a critical
repeated-failures episode that runs through two builds), another reports a 9 % battery
for two and a half hours (a low-battery episode that runs through two builds), then
both recover. After every build all marts equal the independent recomputation, and
the two episodes keep their start and alert_id from the build that first saw them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from stack.ephemeral import EphemeralPostgres
from tests.dbt_ledger import Ledger, build_fleet, utc
from tests.dbt_truth import Truth
from tests.integration.dbt_support import build, ledger_warehouse
from tests.integration.test_dbt_truth import _assert_matches

T0 = utc(2026, 5, 4, 8, 0, 0)


def _land_hour(ledger: Ledger, fleet, hour: int) -> None:
    start, end = T0 + timedelta(hours=hour), T0 + timedelta(hours=hour + 1)
    failing, low = fleet[0], fleet[1]
    for device in fleet[1:]:
        ledger.door_activity(device, start, end)
    for device in fleet:
        if device is not low:
            ledger.health_reports(device, start, end)
    fails_until = end if hour < 2 else start + timedelta(minutes=40)
    at = T0 + timedelta(seconds=30)  # one schedule across the hours
    while at < fails_until:
        if at >= start:
            ledger.event(failing, at, "fail")
        at += timedelta(seconds=100)
    at = T0 + timedelta(seconds=10)
    while at < end:
        if at >= start:
            recovered = hour == 2 and at >= start + timedelta(minutes=30)
            ledger.report(low, at, battery=25 if recovered else 9)
        at += timedelta(minutes=5)


def _episode(cur, device_id: str, alert_type: str) -> list[tuple]:
    cur.execute(
        "select alert_id, started_at, ended_at, severity from marts.fct_alerts"
        " where device_id = %s and alert_type = %s order by started_at",
        (device_id, alert_type),
    )
    return cur.fetchall()


@pytest.fixture(scope="module")
def builds(pg: EphemeralPostgres, tmp_path_factory):
    """The two long episodes as each of the three builds left them."""
    with ledger_warehouse(pg, tmp_path_factory, "dbt_long_episodes", seed=31) as warehouse:
        env, target, conn, ledger = (warehouse[k] for k in ("env", "target", "conn", "ledger"))
        fleet = build_fleet(ledger, T0 - timedelta(minutes=1), count=8)
        seen = []
        for hour in range(3):
            _land_hour(ledger, fleet, hour)
            ledger.flush(conn)
            reference = T0 + timedelta(hours=hour + 1)
            build(env, target, reference.isoformat())
            with conn, conn.cursor() as cur:
                _assert_matches(
                    cur, Truth(ledger.events, ledger.health, ledger.registry, reference)
                )
                seen.append(
                    {
                        "failures": _episode(cur, fleet[0].device_id, "repeated_failures"),
                        "battery": _episode(cur, fleet[1].device_id, "low_battery"),
                    }
                )
        yield seen


def test_a_running_episode_keeps_its_start_and_id_across_builds(builds) -> None:
    first = builds[0]
    assert len(first["failures"]) == 1 and len(first["battery"]) == 1
    failures_id, failures_start, failures_end, failures_severity = first["failures"][0]
    battery_id, battery_start, battery_end, _ = first["battery"][0]
    assert failures_end is None and battery_end is None  # both still running
    assert failures_severity == "critical"
    assert failures_start < T0 + timedelta(minutes=10)
    for later in builds[1:]:
        assert [(row[0], row[1]) for row in later["failures"]] == [(failures_id, failures_start)]
        assert [(row[0], row[1]) for row in later["battery"]] == [(battery_id, battery_start)]


def test_the_continued_episodes_end_when_the_devices_recover(builds) -> None:
    assert builds[1]["failures"][0][2] is None and builds[1]["battery"][0][2] is None
    ((_, _, failures_end, severity),) = builds[2]["failures"]
    ((_, _, battery_end, _),) = builds[2]["battery"]
    assert severity == "critical"
    assert (
        T0 + timedelta(hours=2, minutes=40) <= failures_end <= T0 + timedelta(hours=2, minutes=46)
    )
    assert battery_end == T0 + timedelta(hours=2, minutes=30, seconds=10)
