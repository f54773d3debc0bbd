"""Every dashboard page against a seeded PostgreSQL: figures equal the truth computed
from the seeded rows, filters change them, empty databases get guidance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
import streamlit as st
from psycopg2 import errors

from analytics import queries as q
from analytics.ui import NO_MARTS
from stack.ephemeral import EphemeralPostgres
from tests.apptest_support import (
    DASHBOARD,
    frame_with,
    metric_deltas,
    metrics,
    open_page,
    rerun,
    texts,
)
from tests.dashboard_seed import Seed, _floor, empty_database, seeded_database

PAGES = [
    "views/overview.py",
    "views/activity.py",
    "views/devices.py",
    "views/device.py",
    "views/alerts.py",
    "views/pipeline.py",
]


@pytest.fixture
def seed(pg: EphemeralPostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[Seed]:
    data = seeded_database(pg)
    for key, value in pg.env(user="smart_access_analyst").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PGDATABASE", data.database)
    yield data


def _in_window(seed: Seed, start: datetime, end: datetime, **match: object) -> list[dict]:
    return [
        e
        for e in seed.events
        if start <= e["event_at"] < end and all(e[k] == v for k, v in match.items())
    ]


def _stable(fn):  # type: ignore[no-untyped-def]
    """Run `fn(window)` again if a 15-minute boundary passed while it ran."""
    for _ in range(3):
        before = _floor(datetime.now(UTC), 15)
        result = fn(before)
        if _floor(datetime.now(UTC), 15) == before:
            return result
    raise AssertionError("clock kept crossing window boundaries")


def test_overview_kpis_equal_the_seeded_truth(seed: Seed) -> None:
    def check(window: datetime) -> None:
        at = open_page(DASHBOARD)
        shown, deltas = metrics(at), metric_deltas(at)
        last15 = _in_window(seed, window - timedelta(minutes=15), window)
        prev15 = _in_window(seed, window - timedelta(minutes=30), window - timedelta(minutes=15))
        day = _in_window(seed, window - timedelta(hours=24), window)
        prev_day = _in_window(seed, window - timedelta(hours=48), window - timedelta(hours=24))
        assert shown["Events (15 min)"] == str(len(last15))
        assert int(deltas["Events (15 min)"]) == len(last15) - len(prev15)
        assert shown["Events (24 h)"] == str(len(day))
        assert int(deltas["Events (24 h)"]) == len(day) - len(prev_day)
        fails = sum(e["event_type"] == "fail" for e in day)
        prev_fails = sum(e["event_type"] == "fail" for e in prev_day)
        assert shown["Failure rate (24 h)"] == f"{100 * fails / len(day):.1f} %"
        change = 100 * fails / len(day) - 100 * prev_fails / len(prev_day)
        assert deltas["Failure rate (24 h)"] == f"{change:+.1f} pp"

    _stable(check)
    at = open_page(DASHBOARD)
    shown, deltas = metrics(at), metric_deltas(at)
    active = [s for s in seed.status if s["device_status"] == "active"]
    online = sum(s["is_online"] for s in active)
    low = sum(s["battery_pct"] < q.LOW_BATTERY_PCT for s in active)
    prev_hour = _floor(datetime.now(UTC), 60) - timedelta(hours=1)
    active_ids = {s["device_id"] for s in active}
    prev = [
        h
        for h in seed.health_hourly
        if h["hour_start_at"] == prev_hour and h["device_id"] in active_ids
    ]
    assert shown["Devices online"] == str(online)
    assert int(deltas["Devices online"]) == online - sum(h["online_ratio"] > 0 for h in prev)
    assert shown["Low-battery devices"] == str(low)
    prev_low = sum(h["battery_min_pct"] < q.LOW_BATTERY_PCT for h in prev)
    assert int(deltas["Low-battery devices"]) == low - prev_low
    now = datetime.now(UTC)
    open_now = sum(a["is_open"] for a in seed.alerts)
    open_then = sum(
        a["started_at"] <= now - timedelta(hours=24)
        and (a["ended_at"] is None or a["ended_at"] > now - timedelta(hours=24))
        for a in seed.alerts
    )
    assert shown["Open alerts"] == str(open_now)
    assert int(deltas["Open alerts"]) == open_now - open_then
    assert len(at.get("vega_lite_chart")) == 1
    assert "Events per 15 minutes by type" in at.subheader[0].value


def test_activity_totals_and_filters(seed: Seed) -> None:
    at = open_page(DASHBOARD, "views/activity.py")
    start = _floor(datetime.now(UTC), 60) - timedelta(hours=24)
    end = datetime.now(UTC) + timedelta(hours=1)

    def expect(**match: object) -> None:
        rows = [
            e
            for e in _in_window(seed, start, end)
            if all((e[k] or "unknown") in v for k, v in match.items())  # type: ignore[operator]
        ]
        shown = metrics(at)
        assert shown["Events (last 24 hours)"] == str(len(rows)), match
        assert shown["Failures"] == str(sum(e["event_type"] == "fail" for e in rows))
        if rows:
            totals = frame_with(at, "trigger_source", "events")
            counted = Counter(e["trigger_source"] for e in rows)
            assert dict(zip(totals.trigger_source, totals.events, strict=True)) == counted
            assert len(at.get("vega_lite_chart")) == 2

    expect()
    at.multiselect(key="activity_regions").select("north")
    rerun(at)
    expect(region={"north"})
    at.multiselect(key="activity_regions").select("unknown")
    at.multiselect(key="activity_types").select("gate")
    rerun(at)
    expect(region={"north", "unknown"}, device_type={"gate"})
    at.multiselect(key="activity_regions").set_value([])
    at.multiselect(key="activity_types").set_value([])
    at.multiselect(key="activity_models").select("GD-200")
    rerun(at)
    expect(model={"GD-200"})
    at.multiselect(key="activity_models").set_value([])
    at.text_input(key="activity_household").input("hh-004")
    rerun(at)
    expect(household_id={"hh-004"})
    at.text_input(key="activity_household").input("")
    at.selectbox(key="activity_range").select("last 7 days")
    rerun(at)
    start = _floor(datetime.now(UTC), 60) - timedelta(days=7)
    rows = _in_window(seed, start, end)
    assert metrics(at)["Events (last 7 days)"] == str(len(rows))
    # 30 days: whole days from the daily rollup, trigger sources from the events.
    at.multiselect(key="activity_types").select("smart_lock")
    at.selectbox(key="activity_range").select("last 30 days")
    rerun(at)
    start = _floor(datetime.now(UTC), 24 * 60) - timedelta(days=30)
    expect_rows = [e for e in _in_window(seed, start, end) if e["device_type"] == "smart_lock"]
    assert metrics(at)["Events (last 30 days)"] == str(len(expect_rows))
    totals = frame_with(at, "trigger_source", "events")
    assert totals.events.sum() == len(expect_rows)


def test_devices_table_search_sort_health_and_distributions(seed: Seed) -> None:
    at = open_page(DASHBOARD, "views/devices.py")
    table = frame_with(at, "device_id", "health_state", "battery_pct")
    assert sorted(table.device_id) == sorted(s["device_id"] for s in seed.status)
    active = [s for s in seed.status if s["device_status"] == "active"]
    offline = next(f for f in (df.value for df in at.dataframe) if len(f.columns) == 7)
    assert sorted(offline.device_id) == sorted(s["device_id"] for s in active if not s["is_online"])
    firmware = frame_with(at, "firmware_version", "device_type", "devices")
    expected = Counter((s["firmware_version"], s["device_type"]) for s in active)
    got = {(r.firmware_version, r.device_type): r.devices for r in firmware.itertuples()}
    assert got == expected
    assert len(at.get("vega_lite_chart")) == 3  # battery, signal, firmware

    at.text_input(key="devices_search").input("dev-01")
    rerun(at)
    table = frame_with(at, "device_id", "health_state", "battery_pct")
    assert sorted(table.device_id) == [f"dev-01{n}" for n in range(10)]

    at.text_input(key="devices_search").input("")
    at.multiselect(key="devices_health").select("critical")
    at.selectbox(key="devices_sort").select("battery_pct")
    at.toggle(key="devices_desc").set_value(True)
    rerun(at)
    table = frame_with(at, "device_id", "health_state", "battery_pct")
    critical = [s for s in seed.status if s["health_state"] == "critical"]
    assert sorted(table.device_id) == sorted(s["device_id"] for s in critical)
    assert table.battery_pct.tolist() == sorted((s["battery_pct"] for s in critical), reverse=True)
    assert metrics(at)["Devices shown"] == str(len(critical))


def test_device_page_shows_history_events_and_health(seed: Seed) -> None:
    at = open_page(DASHBOARD, "views/device.py")
    at.selectbox(key="device_id").select("dev-005")
    rerun(at)
    history = frame_with(at, "valid_from_at", "valid_to_at", "firmware_version")
    assert history.firmware_version.tolist() == ["1.9.0", "2.1.0"]
    assert history.is_current.tolist() == [False, True]
    events = frame_with(at, "event_at", "event_type", "trigger_source")
    mine = sorted(
        (e for e in seed.events if e["device_id"] == "dev-005"),
        key=lambda e: e["event_at"],
        reverse=True,
    )
    assert events.event_id.astype(str).tolist() == [e["event_id"] for e in mine[:200]]
    assert len(at.get("vega_lite_chart")) == 2
    assert at.query_params["device_id"] == "dev-005"  # shareable link to this device


def test_alerts_open_recent_durations_and_filters(seed: Seed) -> None:
    at = open_page(DASHBOARD, "views/alerts.py")
    now = datetime.now(UTC)

    def expect(severities: set[str]) -> None:
        alerts = [a for a in seed.alerts if a["severity"] in severities]
        shown = metrics(at)
        assert shown["Open alerts"] == str(sum(a["is_open"] for a in alerts))
        week = [a for a in alerts if a["started_at"] > now - timedelta(days=7)]
        assert shown["Alerts started (last 7 days)"] == str(len(week))
        ended = [a for a in week if not a["is_open"]]
        assert shown["Ended (last 7 days)"] == str(len(ended))
        durations = frame_with(at, "alert_type", "ended_alerts", "max_minutes")
        for row in durations.itertuples():
            mine = [a for a in ended if a["alert_type"] == row.alert_type]
            assert row.ended_alerts == len(mine)
            longest = max((a["ended_at"] - a["started_at"]).total_seconds() for a in mine) / 60
            assert float(row.max_minutes) == pytest.approx(longest, abs=0.05)
        recent = frame_with(at, "alert_id", "duration_minutes")
        expected_ids = {a["alert_id"] for a in alerts if a in week or a["is_open"]}
        assert set(recent.alert_id) == expected_ids

    expect({"warning", "critical"})
    # the notifier's record of the last 7 days, newest first; the unconfirmed one flagged
    shown = frame_with(at, "transition", "attempts", "last_error")
    week = [x for x in seed.notifications if x["updated_at"] > now - timedelta(days=7)]
    expected = sorted(week, key=lambda x: x["updated_at"], reverse=True)
    assert list(zip(shown.alert_id, shown.status, strict=True)) == [
        (x["alert_id"], x["status"]) for x in expected
    ]
    assert any("never resent" in w.value for w in at.warning)
    at.multiselect(key="alerts_severities").select("critical")
    rerun(at)
    expect({"critical"})


def test_pipeline_health_figures(seed: Seed) -> None:
    at = open_page(DASHBOARD, "views/pipeline.py")
    shown = metrics(at)
    now = datetime.now(UTC)
    recent = [b for b in seed.batches if b["committed_at"] > now - timedelta(hours=6)]
    landed = sum(b["events_valid"] + b["health_valid"] + b["devices_valid"] for b in recent)
    assert shown["Rows landed"] == str(landed)
    assert shown["Rows rejected"] == str(sum(b["events_invalid"] for b in recent))
    assert shown["Batches"] == str(len(recent))
    latest = {}
    for b in sorted(seed.batches, key=lambda b: b["committed_at"]):
        latest[b["consumer_id"]] = b["consumer_lag"]
    assert shown["Consumer lag (records)"] == str(sum(latest.values()))
    assert shown["Last run"] == "success"
    assert shown["dbt tests passed"] == "50"
    assert shown["Dead letters"] == str(len(seed.dead_letters))
    reasons = frame_with(at, "error_kind", "dead_letters")
    assert dict(zip(reasons.error_kind, reasons.dead_letters, strict=True)) == Counter(
        d["error_kind"] for d in seed.dead_letters
    )
    failed = frame_with(at, "node_name", "failures")
    assert failed.node_name.tolist() == ["not_null_fct_alerts_alert_id"]
    freshness = frame_with(at, "table_name", "age_seconds")
    assert freshness.table_name.tolist() == ["access_events"]
    at.selectbox(key="pipeline_dead_kind").select("schema_violation")
    rerun(at)
    samples = frame_with(at, "error_detail", "kafka_offset", "payload_bytes")
    wanted = sorted(
        (d for d in seed.dead_letters if d["error_kind"] == "schema_violation"),
        key=lambda d: d["_ingested_at"],
        reverse=True,
    )
    assert samples.error_detail.tolist() == [d["error_detail"] for d in wanted]
    at.selectbox(key="pipeline_range").select("last hour")
    rerun(at)
    hour = [b for b in seed.batches if b["committed_at"] > now - timedelta(hours=1)]
    assert metrics(at)["Batches"] == str(len(hour))


@pytest.mark.parametrize("page", PAGES)
def test_empty_database_pages_explain_what_to_do(
    page: str, pg: EphemeralPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in pg.env(user="smart_access_analyst").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PGDATABASE", empty_database(pg))
    at = open_page(DASHBOARD, page)
    shown = texts(at)
    if page == "views/pipeline.py":
        assert "No ingest batches yet" in shown
        assert "No DAG runs recorded yet" in shown
    assert NO_MARTS in shown


def test_unreachable_database_gets_one_clear_message(
    pg: EphemeralPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stack.ephemeral import free_port

    for key, value in pg.env(user="smart_access_analyst").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PGPORT", str(free_port()))
    at = open_page(DASHBOARD)
    assert "PostgreSQL is not reachable" in texts(at)


@pytest.mark.parametrize(
    "statement",
    [
        "insert into marts.fct_alerts (alert_id, alert_type, device_id, started_at, is_open, "
        "severity) values ('x', 'offline', 'd', now(), true, 'warning')",
        "delete from marts.device_status_current",
        "update ops.ingest_batches set consumer_lag = 0",
        "create table marts.scratch (id int)",
        "create table public.scratch (id int)",
    ],
)
def test_the_dashboard_role_cannot_write(seed: Seed, pg: EphemeralPostgres, statement: str) -> None:
    conn = psycopg2.connect(pg.dsn(seed.database, user="smart_access_analyst"))
    try:
        with (
            conn.cursor() as cur,
            pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)),
        ):
            cur.execute(statement)
        conn.rollback()
        # Even with the read-only default switched off, the grants refuse the write.
        with conn.cursor() as cur:
            cur.execute("set transaction read write")
            with pytest.raises(errors.InsufficientPrivilege):
                cur.execute(statement)
    finally:
        conn.rollback()
        conn.close()
        st.cache_data.clear()


def test_a_renamed_mart_column_is_named_not_hidden(
    seed: Seed, pg: EphemeralPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mart built with other column names says what is wrong instead of 'no marts'."""
    conn = psycopg2.connect(pg.dsn(seed.database))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("alter table marts.fct_alerts rename column is_open to open_flag")
        st.cache_data.clear()  # earlier tests in this process cached the alerts queries
        at = open_page(DASHBOARD, "views/alerts.py")
        shown = texts(at)
        assert "lacks a column" in shown and "is_open" in shown
        assert NO_MARTS not in shown
    finally:
        with conn.cursor() as cur:
            cur.execute("alter table marts.fct_alerts rename column open_flag to is_open")
        conn.close()
        st.cache_data.clear()


def test_pipeline_shows_consumer_restarts_and_stopped_partitions(
    seed: Seed, pg: EphemeralPostgres
) -> None:
    conn = psycopg2.connect(pg.dsn(database=seed.database))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for pid in (101, 102, 103):  # a consumer that crashed twice in the last hour
                cur.execute(
                    "insert into ops.consumer_starts (consumer_id, consumer_group, pid) "
                    "values (%s, 'smart-access-sink', %s)",
                    (f"host-{pid}", pid),
                )
            cur.execute(
                "insert into ops.consumer_halts (consumer_group, topic, partition, reason, "
                "stored_offset, log_start, log_end, log_epoch) values "
                "('smart-access-sink', 'smart-access.events', 4, 'offset_beyond_log_end', "
                "1200, 0, 35, 0)"
            )
        st.cache_data.clear()  # earlier tests cached these queries' empty answers
        at = open_page(DASHBOARD, "views/pipeline.py")
        shown = metrics(at)
        assert shown["Consumer process starts (last hour)"] == "3"
        assert shown["Consumer restarts (last hour)"] == "2"
        errors_shown = [e.value for e in at.error]
        assert any("1 partition(s) stopped" in e and "--accept-new-log" in e for e in errors_shown)
        halts = frame_with(at, "reason", "stored_offset", "log_end")
        assert halts.stored_offset.tolist() == [1200] and halts.log_end.tolist() == [35]
    finally:
        with conn.cursor() as cur:
            cur.execute("delete from ops.consumer_starts where consumer_id like 'host-10%'")
            cur.execute("delete from ops.consumer_halts where stored_offset = 1200")
        conn.close()


def test_pipeline_links_to_the_consumer_graphs_in_prometheus(seed: Seed) -> None:
    at = open_page(DASHBOARD, "views/pipeline.py")
    captions = " ".join(c.value for c in at.caption)
    assert "Graphs in Prometheus" in captions
    assert "/graph?g0.expr=sum+by+%28topic%29+%28smart_access_consumer_lag_records%29" in captions
    assert "/alerts)" in captions
