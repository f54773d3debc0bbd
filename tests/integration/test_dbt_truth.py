"""Truth reconciliation: real PostgreSQL, real dbt, marts == an independent recomputation.

One simulated ledger lands in two phases. Phase 1 (two hours) is built from scratch;
phase 2 arrives three days later with late events from phase 1 (three days late),
re-sent duplicates, a firmware rollout, a retirement and a device whose registry
record came after its events; it is built incrementally. After each build every
mart equals the Python recomputation from the raw rows, and the incremental result
equals a full refresh.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg2
import pytest

from stack.ephemeral import EphemeralPostgres
from tests.dbt_ledger import Device, Ledger, build_fleet, utc
from tests.dbt_truth import Truth
from tests.integration.dbt_support import build, ledger_warehouse

T0 = utc(2026, 3, 2, 8, 0, 0)
PHASE2 = T0 + timedelta(days=3)
REF1 = T0 + timedelta(hours=2, minutes=5)
REF2 = PHASE2 + timedelta(minutes=35)
SCRIPTED = {f"dev-{n:04d}" for n in range(8, 17)}


def _phase1(ledger: Ledger) -> list[Device]:
    fleet = build_fleet(ledger, T0 - timedelta(minutes=1))
    end = T0 + timedelta(hours=2)
    for device in fleet[19:23]:  # devices written to the original guide (contract v0)
        device.v0 = True
    for device in fleet:
        if device.device_id not in SCRIPTED:
            ledger.door_activity(device, T0, end)
    dev = {d.device_id: d for d in fleet}
    # Health: mostly every 5 minutes, with scripted troubles.
    for device in fleet:
        if device.device_id == "dev-0002":  # silent for half an hour: a closed offline alert
            ledger.health_reports(device, T0, T0 + timedelta(minutes=40))
            ledger.health_reports(device, T0 + timedelta(minutes=72), end)
        elif device.device_id == "dev-0003":  # goes quiet for good: an open offline alert
            ledger.health_reports(device, T0, T0 + timedelta(minutes=80))
        else:
            ledger.health_reports(device, T0, end)
    for minute in range(30, 61, 5):  # low battery that recovers
        ledger.report(dev["dev-0004"], T0 + timedelta(minutes=minute, seconds=30), battery=12)
    ledger.report(dev["dev-0004"], T0 + timedelta(minutes=65, seconds=30), battery=80)
    for minute in range(90, 121, 5):  # critically low, still low at the end
        ledger.report(dev["dev-0005"], T0 + timedelta(minutes=minute, seconds=45), battery=3)
    ledger.report(dev["dev-0006"], end - timedelta(seconds=30), signal=-110)
    ledger.report(dev["dev-0007"], end - timedelta(seconds=20), online=False)

    def burst(device_id: str, start_minute: int, seconds: list[int]) -> None:
        for s in seconds:
            at = T0 + timedelta(minutes=start_minute, seconds=s)
            ledger.event(dev[device_id], at, "fail", trigger="app")

    burst("dev-0008", 50, [0, 40, 80, 120, 160])  # 5 fails within 5 min: warning
    burst("dev-0009", 20, [0, 30, 60, 90, 120, 150, 180])  # 7: critical
    burst("dev-0010", 70, [0, 150, 310])  # third fail 10 s too late: no alert (yet)
    burst("dev-0011", 70, [0, 150, 300])  # exactly 5 minutes: alert
    # Sessions: close before open, two opens in a row, an open exactly on a boundary.
    d14 = dev["dev-0014"]
    for minute, kind in [(5, "close"), (6, "open"), (20, "open"), (25, "close")]:
        ledger.event(d14, T0 + timedelta(minutes=minute), kind)
    ledger.event(dev["dev-0015"], T0 + timedelta(minutes=15), "open")
    ledger.event(dev["dev-0015"], T0 + timedelta(minutes=44, seconds=59), "close")
    ledger.event(dev["dev-0012"], T0 + timedelta(minutes=118), "open")  # closed late, in phase 2
    ledger.event(dev["dev-0013"], T0 + timedelta(minutes=30), "open")  # left open 25 minutes
    ledger.event(dev["dev-0013"], T0 + timedelta(minutes=55), "close")
    # A device the registry does not know yet (its record lands in phase 2).
    ghost = Device(
        "dev-0099",
        "hh-099",
        "gate",
        "GT-10",
        "2.0.0",
        "north",
        "Europe/Berlin",
        T0 - timedelta(days=10),
    )
    for minute in (10, 11, 40, 41):
        ledger.event(ghost, T0 + timedelta(minutes=minute), "open" if minute % 2 == 0 else "close")
    # Late within the phase (an hour late) and re-sent duplicates.
    candidates = [
        e for e in ledger._pending["smart-access.events"] if e["device_id"] not in SCRIPTED
    ]
    for row in ledger.rng.sample(candidates, 40):
        ledger.resend(row, row["_ingested_at"] + timedelta(seconds=ledger.rng.randint(1, 30)))
    for device in fleet[20:30]:
        at = T0 + timedelta(minutes=ledger.rng.randint(10, 60), seconds=17)
        ledger.event(device, at, "close", ingested_at=end - timedelta(minutes=1))
    # A v0 device the registry never hears of: household 'unknown', no attributes; one
    # of its events sent twice (the same device event id: one row in the marts). Its
    # own random stream leaves the rest of the scenario as it was.
    with ledger.own_stream(99):
        stray = Device("7", "hh-none", "gate", "GT-10", "0", None, None, T0, v0=True)
        for minute, kind in ((12, "open"), (13, "close"), (33, "fail"), (34, "open")):
            row = ledger.event(stray, T0 + timedelta(minutes=minute), kind, trigger="keypad")
        ledger.resend(row, row["_ingested_at"] + timedelta(seconds=3))
    return fleet


def _phase2(ledger: Ledger, fleet: list[Device]) -> None:
    dev = {d.device_id: d for d in fleet}
    end = PHASE2 + timedelta(minutes=30)
    early_rows = list(ledger.events)
    # Registry: firmware rollout to every other device ten minutes in, a retirement,
    # and the unknown device's record (its phase-1 events must pick it up).
    for device in fleet[::2]:
        device.firmware_version = "1.5.0"
        ledger.register(
            device, PHASE2 + timedelta(minutes=10), PHASE2 + timedelta(minutes=10, seconds=1)
        )
    dev["dev-0016"].status = "retired"
    ledger.register(
        dev["dev-0016"], PHASE2 + timedelta(minutes=1), PHASE2 + timedelta(minutes=1, seconds=2)
    )
    ghost = Device(
        "dev-0099",
        "hh-099",
        "gate",
        "GT-10",
        "2.0.0",
        "north",
        "Europe/Berlin",
        T0 - timedelta(days=10),
    )
    ledger.register(ghost, T0 - timedelta(days=5), PHASE2 + timedelta(minutes=2))
    # A tombstone on the registry topic: a v0 device is removed (retired from then on).
    ledger.remove(dev["dev-0022"], PHASE2 + timedelta(minutes=3), PHASE2 + timedelta(minutes=4))
    # Two firmware changes of one device between the same two builds, and a change
    # older than the current version that lands three days late.
    for minute, firmware in ((5, "1.6.0"), (20, "1.7.0")):
        dev["dev-0002"].firmware_version = firmware
        ledger.register(
            dev["dev-0002"], PHASE2 + timedelta(minutes=minute), PHASE2 + timedelta(minutes=25)
        )
    dev["dev-0004"].firmware_version = "1.4.1"
    ledger.register(dev["dev-0004"], T0 + timedelta(minutes=60), PHASE2 + timedelta(minutes=12))
    for device in fleet:
        if device.device_id not in SCRIPTED:
            ledger.door_activity(device, PHASE2, end)
        if device.device_id not in ("dev-0003", "dev-0016"):
            ledger.health_reports(device, PHASE2, end)
    # Three days late: a fail that completes dev-0010's burst, the close of dev-0012's
    # door, and a handful of ordinary events into old windows.
    late = PHASE2 + timedelta(minutes=12)
    ledger.event(dev["dev-0010"], T0 + timedelta(minutes=72, seconds=50), "fail", ingested_at=late)
    ledger.event(dev["dev-0012"], T0 + timedelta(minutes=150), "close", ingested_at=late)
    for device in fleet[0:8]:
        at = T0 + timedelta(minutes=ledger.rng.randint(0, 110), seconds=ledger.rng.randint(0, 59))
        ledger.event(device, at, ledger.rng.choice(["open", "close", "fail"]), ingested_at=late)
    # Three days late, four door events in one hour of dev-0017's history, with its
    # phase-1 events between them: two of them 30 s apart, the others minutes apart
    # (int_door_sessions resequences each group alone). Their own random stream leaves
    # the rest of the scenario as it was.
    with ledger.own_stream(17):
        for minute, second, kind in (
            (40, 0, "close"),
            (40, 30, "open"),
            (47, 0, "close"),
            (58, 10, "open"),
        ):
            at = T0 + timedelta(minutes=minute, seconds=second)
            ledger.event(dev["dev-0017"], at, kind, ingested_at=late, trigger="app")
    # A low reading from before dev-0005's open low-battery episode, three days late: the
    # episode now starts earlier and keeps its alert_id.
    ledger.report(
        dev["dev-0005"], T0 + timedelta(minutes=90, seconds=40), battery=4, ingested_at=late
    )
    # Duplicates of phase-1 events, re-sent three days later.
    for row in ledger.rng.sample(early_rows, 15):
        ledger.resend(row, late + timedelta(seconds=5))


MARTS = {
    "fct_access_events": (
        "select event_id::text, device_id, household_id, event_at, event_type, trigger_source,"
        " failure_reason, model, firmware_version, region from marts.fct_access_events",
        "fct_access_events",
    ),
    "agg_access_15min": (
        "select device_id, window_start_at, event_count, open_count, close_count, fail_count,"
        " failure_rate, distinct_trigger_count from marts.agg_access_15min",
        "agg_access_15min",
    ),
    "agg_access_hourly": (
        "select hour_start_at, household_id, region, device_type, model, event_count,"
        " open_count, close_count, fail_count, failure_rate, distinct_trigger_count,"
        " active_device_count, app_trigger_count, keypad_trigger_count, remote_trigger_count,"
        " schedule_trigger_count, voice_trigger_count, auto_close_trigger_count"
        " from marts.agg_access_hourly",
        "agg_access_hourly",
    ),
    "agg_access_fleet_15min": (
        "select window_start_at, region, device_type, model, event_count, open_count,"
        " close_count, fail_count, app_trigger_count, keypad_trigger_count,"
        " remote_trigger_count, schedule_trigger_count, voice_trigger_count,"
        " auto_close_trigger_count from marts.agg_access_fleet_15min",
        "agg_access_fleet_15min",
    ),
    "agg_access_daily": (
        "select day_start_at, household_id, region, device_type, model, event_count,"
        " open_count, close_count, fail_count, failure_rate, distinct_trigger_count,"
        " app_trigger_count, keypad_trigger_count, remote_trigger_count,"
        " schedule_trigger_count, voice_trigger_count, auto_close_trigger_count"
        " from marts.agg_access_daily",
        "agg_access_daily",
    ),
    "fct_device_health_hourly": (
        "select device_id, hour_start_at, report_count, battery_min_pct, battery_avg_pct,"
        " signal_avg_dbm, online_ratio from marts.fct_device_health_hourly",
        "fct_device_health_hourly",
    ),
    "int_door_sessions": (
        "select session_id::text, device_id, opened_at, closed_at, ended_at, end_reason,"
        " is_still_open from intermediate.int_door_sessions",
        "door_sessions",
    ),
    "fct_alerts": (
        "select alert_type, device_id, household_id, started_at, ended_at, severity"
        " from marts.fct_alerts",
        "alerts",
    ),
    "device_status_current": (
        "select device_id, firmware_version, last_seen_at, battery_pct, signal_strength_dbm,"
        " is_online, event_count_24h, fail_count_24h, failure_rate_24h, health_state"
        " from marts.device_status_current",
        "device_status",
    ),
    "dim_device": (
        "select device_id, household_id, model, firmware_version, device_status, region,"
        " valid_from_at, valid_to_at, is_current from marts.dim_device",
        "dim_device",
    ),
    "dim_household": (
        "select household_id, region, timezone, device_count, active_device_count,"
        " first_installed_at from marts.dim_household",
        "dim_household",
    ),
}


def _normalise(value):
    if isinstance(value, Decimal):
        return value.normalize() if value == value.to_integral() else value
    return value


def _rows(cur, sql: str) -> set[tuple]:
    cur.execute(sql)
    return {tuple(_normalise(v) for v in row) for row in cur.fetchall()}


def _assert_matches(cur, truth: Truth) -> None:
    problems = []
    for name, (sql, method) in MARTS.items():
        actual = _rows(cur, sql)
        expected = {tuple(_normalise(v) for v in row) for row in getattr(truth, method)()}
        if actual != expected:
            missing = sorted(expected - actual, key=str)[:5]
            extra = sorted(actual - expected, key=str)[:5]
            problems.append(f"{name}: expected-not-found {missing} / found-not-expected {extra}")
        assert expected, f"{name}: the scenario produced no rows to compare"
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def warehouse(pg: EphemeralPostgres, tmp_path_factory):
    with ledger_warehouse(pg, tmp_path_factory, "dbt_truth", seed=11) as warehouse:
        yield warehouse


@pytest.fixture(scope="module")
def phase1(warehouse):
    ledger, conn = warehouse["ledger"], warehouse["conn"]
    fleet = _phase1(ledger)
    ledger.flush(conn)
    # CI runs the project's dbt unit tests here; the 15-minute cycle leaves them out
    result = build(warehouse["env"], warehouse["target"], REF1.isoformat(), unit_tests=True)
    return fleet, result


@pytest.fixture(scope="module")
def phase2(warehouse, phase1):
    ledger, conn = warehouse["ledger"], warehouse["conn"]
    with conn, conn.cursor() as cur:
        cur.execute(
            "select fail_count from marts.agg_access_15min where device_id = 'dev-0010'"
            " and window_start_at = %s",
            (T0 + timedelta(minutes=60),),
        )
        before = cur.fetchone()
        cur.execute(
            "select alert_id, started_at from marts.fct_alerts"
            " where device_id = 'dev-0005' and alert_type = 'low_battery'"
            " and started_at between %s and %s",
            (T0 + timedelta(minutes=80), T0 + timedelta(minutes=91)),
        )
        before_alert = cur.fetchall()
    _phase2(ledger, phase1[0])
    ledger.flush(conn)
    result = build(warehouse["env"], warehouse["target"], REF2.isoformat())
    return before, result, before_alert


def test_full_build_matches_recomputation(warehouse, phase1) -> None:
    ledger, conn = warehouse["ledger"], warehouse["conn"]
    assert len(ledger.events) > len({e["event_id"] for e in ledger.events})  # duplicates landed
    truth = Truth(ledger.events, ledger.health, ledger.registry, REF1)
    with conn, conn.cursor() as cur:
        _assert_matches(cur, truth)
        cur.execute("select distinct alert_type from marts.fct_alerts")
        kinds = {r[0] for r in cur.fetchall()}
    assert kinds == {"repeated_failures", "door_left_open", "low_battery", "offline"}
    with conn, conn.cursor() as cur:  # a device only its events know: shown, unregistered
        cur.execute(
            "select device_status, household_id, event_count_24h"
            " from marts.device_status_current where device_id = '7'"
        )
        assert cur.fetchone() == ("unregistered", "unknown", 4)


def test_incremental_after_late_data_matches_recomputation(warehouse, phase2) -> None:
    ledger, conn = warehouse["ledger"], warehouse["conn"]
    before, result, _ = phase2
    truth = Truth(ledger.events, ledger.health, ledger.registry, REF2)
    with conn, conn.cursor() as cur:
        _assert_matches(cur, truth)
        # The event three days late corrected its 15-minute window ...
        cur.execute(
            "select fail_count from marts.agg_access_15min where device_id = 'dev-0010'"
            " and window_start_at = %s",
            (T0 + timedelta(minutes=60),),
        )
        assert (before[0], cur.fetchone()[0]) == (2, 3)
        # ... and completed a burst of three fails within five minutes.
        cur.execute(
            "select min(started_at) from marts.fct_alerts"
            " where device_id = 'dev-0010' and alert_type = 'repeated_failures'"
        )
        assert cur.fetchone()[0] == T0 + timedelta(minutes=72, seconds=50)
        # Phase-1 events of the device registered later now carry its attributes.
        cur.execute(
            "select count(*), count(model) from marts.fct_access_events"
            " where device_id = 'dev-0099'"
        )
        assert cur.fetchone() == (4, 4)
        # The device registered late never sent a health report: offline from its
        # registration on, by absence.
        cur.execute(
            "select started_at, ended_at, severity from marts.fct_alerts"
            " where device_id = 'dev-0099' and alert_type = 'offline'"
        )
        assert cur.fetchall() == [(T0 - timedelta(days=5, minutes=-15), None, "critical")]
        # The retired device: its running offline episode ended at the retirement, and
        # nothing (its door kept reporting) starts after it.
        retired_at = PHASE2 + timedelta(minutes=1)
        cur.execute(
            "select alert_type, ended_at from marts.fct_alerts"
            " where device_id = 'dev-0016' and (ended_at is null or ended_at >= %s)",
            (retired_at,),
        )
        assert cur.fetchall() == [("offline", retired_at)]
        cur.execute(
            "select count(*) from marts.fct_alerts where device_id = 'dev-0016'"
            " and started_at >= %s",
            (retired_at,),
        )
        assert cur.fetchone()[0] == 0
    # The incremental run only wrote the new rows (plus the lookback and reprocessing).
    assert result.rows_affected["fct_access_events"] < len(ledger.events) // 2


def test_alert_id_is_stable_for_an_episode_late_data_changes(warehouse, phase2) -> None:
    # (before test_incremental_equals_full_refresh: a full refresh gives new ids)
    _, _, before_alert = phase2
    with warehouse["conn"] as conn, conn.cursor() as cur:
        cur.execute(
            "select alert_id, started_at, is_open from marts.fct_alerts"
            " where device_id = 'dev-0005' and alert_type = 'low_battery'"
            " and started_at between %s and %s",
            (T0 + timedelta(minutes=80), T0 + timedelta(minutes=91)),
        )
        after = cur.fetchall()
    assert before_alert == [(before_alert[0][0], T0 + timedelta(minutes=90, seconds=45))]
    # One episode, now starting at the late reading, closed by phase 2's reports.
    assert after == [(before_alert[0][0], T0 + timedelta(minutes=90, seconds=40), False)]


def test_fact_is_partitioned_by_event_day_and_late_events_land_in_old_days(
    warehouse, phase2
) -> None:
    with warehouse["conn"] as conn, conn.cursor() as cur:
        cur.execute(
            """
            select part.relname from pg_inherits as parts
            join pg_class as part on part.oid = parts.inhrelid
            where parts.inhparent = 'marts.fct_access_events'::regclass order by 1
            """
        )
        partitions = [row[0] for row in cur.fetchall()]
        # dev-0010's fail, three days late, sits in its own day's partition.
        cur.execute(
            "select tableoid::regclass::text, transformed_at > %s from marts.fct_access_events"
            " where device_id = 'dev-0010' and event_at = %s",
            (T0 + timedelta(days=1), T0 + timedelta(minutes=72, seconds=50)),
        )
        late = cur.fetchall()
    # Event days 03-02 and 03-05, each with two days made ahead.
    assert partitions == [f"fct_access_events_p202603{day:02d}" for day in range(2, 8)]
    assert late == [("marts.fct_access_events_p20260302", True)]


def _versions(cur, device_id: str) -> list[tuple]:
    cur.execute(
        "select firmware_version, valid_from_at, valid_to_at from marts.dim_device"
        " where device_id = %s order by valid_from_at",
        (device_id,),
    )
    return cur.fetchall()


def _firmware_of_events(cur, device_id: str, since) -> dict[str, int]:
    cur.execute(
        "select firmware_version, count(*) from marts.fct_access_events"
        " where device_id = %s and event_at >= %s group by 1",
        (device_id, since),
    )
    return dict(cur.fetchall())


def test_device_history_holds_every_registry_change(warehouse, phase2) -> None:
    conn = warehouse["conn"]
    rollout_at = PHASE2 + timedelta(minutes=10)
    first = T0 - timedelta(days=1, minutes=1)
    with conn, conn.cursor() as cur:
        assert _versions(cur, "dev-0001") == [
            ("1.4.0", first, rollout_at),
            ("1.5.0", rollout_at, None),
        ]
        # Both changes between the two builds are versions of their own.
        assert _versions(cur, "dev-0002") == [
            ("1.4.0", first, PHASE2 + timedelta(minutes=5)),
            ("1.6.0", PHASE2 + timedelta(minutes=5), PHASE2 + timedelta(minutes=20)),
            ("1.7.0", PHASE2 + timedelta(minutes=20), None),
        ]
        # The late change older than the events already built rewrote them.
        assert _versions(cur, "dev-0004") == [
            ("1.4.0", first, T0 + timedelta(minutes=60)),
            ("1.4.1", T0 + timedelta(minutes=60), None),
        ]
        late_change = _firmware_of_events(cur, "dev-0004", T0 + timedelta(minutes=60))
        assert set(late_change) == {"1.4.1"}
        assert set(_firmware_of_events(cur, "dev-0001", PHASE2)) == {"1.4.0", "1.5.0"}
        assert set(_firmware_of_events(cur, "dev-0002", PHASE2)) == {"1.4.0", "1.6.0", "1.7.0"}


def test_incremental_equals_full_refresh(warehouse, phase2) -> None:
    conn = warehouse["conn"]
    with conn, conn.cursor() as cur:
        incremental = {name: _rows(cur, sql) for name, (sql, _) in MARTS.items()}
    build(warehouse["env"], warehouse["target"], REF2.isoformat(), full_refresh=True)
    with conn, conn.cursor() as cur:
        refreshed = {name: _rows(cur, sql) for name, (sql, _) in MARTS.items()}
    for name in MARTS:
        assert incremental[name] == refreshed[name], name


def test_build_results_are_recorded_for_the_dashboard(warehouse, phase2) -> None:
    _, result, _ = phase2
    conn = psycopg2.connect(
        warehouse["dsn"]
        .replace("user=postgres", "user=smart_access_analyst")
        .replace("password=postgres", "password=analyst")
    )
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select success, tests_passed, tests_failed from ops.dbt_runs"
                " where invocation_id = %s",
                (result.invocation_id,),
            )
            assert cur.fetchone() == (True, result.tests_passed, 0)
            cur.execute(
                "select node_name, status, rows_affected from ops.dbt_node_results"
                " where invocation_id = %s and resource_type = 'model'",
                (result.invocation_id,),
            )
            models = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
    finally:
        conn.close()
    assert models["fct_access_events"] == ("success", result.rows_affected["fct_access_events"])
    assert result.tests_passed > 50


def _readme_queries() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Transformations (dbt)", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```sql\n")[1:]]


def test_readme_queries_run_as_the_analyst(warehouse, phase2) -> None:
    import subprocess

    queries = _readme_queries()
    assert 6 <= len(queries) <= 10
    env = {
        **warehouse["env"],
        "PGUSER": "smart_access_analyst",
        "PGPASSWORD": "analyst",
    }
    for query in queries:
        proc = subprocess.run(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", query],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"{query}\n{proc.stderr}"
        assert "row" in proc.stdout  # psql's "(N rows)" footer: a result came back
    # The firmware-history example finds the rollout of the simulated ledger.
    firmware = next(q for q in queries if "dev-0001" in q)
    proc = subprocess.run(
        ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", firmware],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [line.split("|")[1] for line in proc.stdout.splitlines()] == ["1.4.0", "1.5.0"]


def test_v0_events_and_a_registry_tombstone(warehouse, phase2) -> None:
    """The guide's format reaches the marts mapped to v1; a tombstone retires a device."""
    conn = warehouse["conn"]
    with conn, conn.cursor() as cur:
        cur.execute(
            "select household_id, event_type, failure_reason, trigger_source, model"
            " from marts.fct_access_events where device_id = '7' order by event_at"
        )
        stray = cur.fetchall()
        assert len(stray) == 4  # its resent event counted once
        assert {r[0] for r in stray} == {"unknown"} and {r[4] for r in stray} == {None}
        assert stray[2][1:4] == ("fail", "unknown", "keypad")
        cur.execute(
            "select count(*), count(*) filter (where household_id = %s)"
            " from marts.fct_access_events where device_id = 'dev-0020'",
            (warehouse["ledger"].devices["dev-0020"].household_id,),
        )
        total, with_registry_household = cur.fetchone()
        assert total > 0 and with_registry_household == total
        cur.execute(
            "select device_status, valid_from_at, valid_to_at, is_current, model"
            " from marts.dim_device where device_id = 'dev-0022' order by valid_from_at"
        )
        *earlier, last = cur.fetchall()
        removed_at = PHASE2 + timedelta(minutes=3)
        assert last[:4] == ("retired", removed_at, None, True) and last[4] is not None
        assert earlier[-1][2] == removed_at and earlier[-1][0] == "active"


# Last in the module: phase2 must not run before the phase-1 comparisons.
def test_the_unit_tests_run_in_ci_and_not_in_the_cycle(phase1, phase2) -> None:
    unit = [n for n in phase1[1].nodes if n.resource_type == "unit_test"]
    assert len(unit) >= 5 and all(n.status == "pass" for n in unit), unit
    cycle = phase2[1]
    assert not [n for n in cycle.nodes if n.resource_type == "unit_test"]
    assert [n for n in cycle.nodes if n.resource_type == "test"]
