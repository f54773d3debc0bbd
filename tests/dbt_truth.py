"""What the marts must say, recomputed in plain Python from the raw rows.

Independent of the SQL: the same rules as written in the models' documentation,
applied row by row to the ledger's raw rows (duplicates, late rows and all).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import get_args

from streaming.contracts import TriggerSource

NEG_INF = datetime.min.replace(tzinfo=UTC)
POS_INF = datetime.max.replace(tzinfo=UTC)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# The event contract's trigger sources: the rollups carry one count column per source.
TRIGGER_SOURCES: tuple[str, ...] = get_args(TriggerSource)


@dataclass(frozen=True)
class Rules:
    repeated_failures_count: int = 3
    repeated_failures_window: timedelta = timedelta(minutes=5)
    repeated_failures_critical_count: int = 6
    door_open: timedelta = timedelta(minutes=10)
    door_open_critical: timedelta = timedelta(minutes=60)
    low_battery_pct: int = 15
    low_battery_recovered_pct: int = 20
    critical_battery_pct: int = 5
    offline: timedelta = timedelta(minutes=15)
    offline_critical: timedelta = timedelta(minutes=60)
    warning_failure_rate_24h: Decimal = Decimal("0.2")
    weak_signal_dbm: int = -100


def rounded(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def ratio(numerator: int, denominator: int, places: int = 6) -> Decimal | None:
    if denominator == 0:
        return None
    return rounded(Decimal(numerator) / Decimal(denominator), places)


def window_15min(at: datetime) -> datetime:
    return at - timedelta(seconds=(at - EPOCH).total_seconds() % 900)


def hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def arrived_at(row: dict) -> datetime:
    """When a raw row reached Kafka: its record timestamp, else its landing time."""
    return row.get("kafka_timestamp") or row["_ingested_at"]


def _first_landed(rows: list[dict], key) -> list[dict]:
    best: dict = {}
    for row in rows:
        rank = (
            row["_ingested_at"],
            row["kafka_topic"],
            row["kafka_partition"],
            row["kafka_offset"],
        )
        k = key(row)
        if k not in best or rank < best[k][0]:
            best[k] = (rank, row)
    return [row for _, row in best.values()]


class Truth:
    def __init__(
        self,
        events: list[dict],
        health: list[dict],
        registry: list[dict],
        reference_at: datetime,
        rules: Rules | None = None,
    ) -> None:
        self.rules = rules or Rules()
        self.reference_at = reference_at
        self.health = _first_landed(health, lambda r: (r["device_id"], r["reported_at"]))
        changes = _first_landed(registry, lambda r: (r["device_id"], r["updated_at"]))
        self.versions: dict[str, list[dict]] = defaultdict(list)
        for change in sorted(changes, key=lambda r: r["updated_at"]):
            versions = self.versions[change["device_id"]]
            if change["status"] == "removed":  # a tombstone: retired, as registered before
                if versions:
                    versions.append(
                        {**versions[-1], "status": "retired", "updated_at": change["updated_at"]}
                    )
                continue
            versions.append(change)
        self.events = [
            self._as_v1(e) for e in _first_landed(events, lambda r: (r["event_id"], r["event_ts"]))
        ]

    def _as_v1(self, event: dict) -> dict:
        """A v0 event as staging maps it (the README's contract table)."""
        if event["schema_version"] != 0:
            return event
        version = self.version_at(event["device_id"], event["event_ts"])
        is_fail = event["event_type"] in ("fail", "command_failed")
        return {
            **event,
            "household_id": version["household_id"] if version else "unknown",
            "event_type": "fail" if is_fail else event["event_type"],
            "failure_reason": "unknown" if is_fail else None,
            "trigger_source": "keypad"
            if event["trigger_source"] == "button"
            else event["trigger_source"],
        }

    # --- dimensions -------------------------------------------------------------
    def version_at(self, device_id: str, at: datetime) -> dict | None:
        versions = self.versions.get(device_id, [])
        chosen = versions[0] if versions else None
        for version in versions:
            if version["updated_at"] <= at:
                chosen = version
        return chosen

    def dim_device(self) -> set[tuple]:
        out = set()
        for device_id, versions in self.versions.items():
            for index, v in enumerate(versions):
                valid_to = versions[index + 1]["updated_at"] if index + 1 < len(versions) else None
                out.add(
                    (
                        device_id,
                        v["household_id"],
                        v["model"],
                        v["firmware_version"],
                        v["status"],
                        v["region"],
                        v["updated_at"],
                        valid_to,
                        valid_to is None,
                    )
                )
        return out

    def current(self) -> dict[str, dict]:
        return {d: versions[-1] for d, versions in self.versions.items()}

    def dim_household(self) -> set[tuple]:
        by_household: dict[str, list[dict]] = defaultdict(list)
        for v in self.current().values():
            by_household[v["household_id"]].append(v)
        out = set()
        for household, versions in by_household.items():
            latest = sorted(versions, key=lambda v: (-v["updated_at"].timestamp(), v["device_id"]))[
                0
            ]
            out.add(
                (
                    household,
                    latest["region"],
                    latest["timezone"],
                    len(versions),
                    sum(v["status"] == "active" for v in versions),
                    min(v["installed_at"] for v in versions),
                )
            )
        return out

    # --- facts ------------------------------------------------------------------
    def fct_access_events(self) -> set[tuple]:
        out = set()
        for e in self.events:
            v = self.version_at(e["device_id"], e["event_ts"])
            out.add(
                (
                    e["event_id"],
                    e["device_id"],
                    e["household_id"],
                    e["event_ts"],
                    e["event_type"],
                    e["trigger_source"],
                    e["failure_reason"],
                    v and v["model"],
                    v and v["firmware_version"],
                    v and v["region"],
                )
            )
        return out

    def agg_access_15min(self) -> set[tuple]:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for e in self.events:
            groups[(e["device_id"], window_15min(e["event_ts"]))].append(e)
        return {self._counts(key, rows) for key, rows in groups.items()}

    @staticmethod
    def _counts(key: tuple, rows: list[dict]) -> tuple:
        types = [r["event_type"] for r in rows]
        fails = types.count("fail")
        return (
            *key,
            len(rows),
            types.count("open"),
            types.count("close"),
            fails,
            ratio(fails, len(rows)),
            len({r["trigger_source"] for r in rows}),
        )

    def _grouped(self, bucket) -> dict[tuple, list[dict]]:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for e in self.events:
            v = self.version_at(e["device_id"], e["event_ts"])
            key = (
                bucket(e["event_ts"]),
                e["household_id"],
                (v and v["region"]) or "unknown",
                (v and v["device_type"]) or "unknown",
                (v and v["model"]) or "unknown",
            )
            groups[key].append(e)
        return groups

    @staticmethod
    def _by_source(rows: list[dict]) -> tuple[int, ...]:
        """Event counts per trigger source, in the order of TRIGGER_SOURCES."""
        sources = Counter(r["trigger_source"] for r in rows)
        assert set(sources) <= set(TRIGGER_SOURCES), sources
        return tuple(sources[s] for s in TRIGGER_SOURCES)

    def agg_access_hourly(self) -> set[tuple]:
        return {
            (*self._counts(key, rows), len({r["device_id"] for r in rows}), *self._by_source(rows))
            for key, rows in self._grouped(hour).items()
        }

    def agg_access_fleet_15min(self) -> set[tuple]:
        fleet: dict[tuple, list[dict]] = defaultdict(list)
        for (window, _, *segment), rows in self._grouped(window_15min).items():
            fleet[(window, *segment)].extend(rows)
        return {
            (*key, *self._counts(key, rows)[len(key) : len(key) + 4], *self._by_source(rows))
            for key, rows in fleet.items()
        }

    def agg_access_daily(self) -> set[tuple]:
        return {
            (*self._counts(key, rows), *self._by_source(rows))
            for key, rows in self._grouped(day).items()
        }

    def fct_device_health_hourly(self) -> set[tuple]:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for h in self.health:
            groups[(h["device_id"], hour(h["reported_at"]))].append(h)
        out = set()
        for key, rows in groups.items():
            n = len(rows)
            out.add(
                (
                    *key,
                    n,
                    min(r["battery_pct"] for r in rows),
                    rounded(Decimal(sum(r["battery_pct"] for r in rows)) / n, 2),
                    rounded(Decimal(sum(r["signal_strength_dbm"] for r in rows)) / n, 2),
                    ratio(sum(r["is_online"] for r in rows), n),
                )
            )
        return out

    # --- sessions and alerts ------------------------------------------------------
    def door_sessions(self) -> set[tuple]:
        by_device: dict[str, list[dict]] = defaultdict(list)
        for e in self.events:
            if e["event_type"] in ("open", "close"):
                by_device[e["device_id"]].append(e)
        out = set()
        for device_id, rows in by_device.items():
            rows.sort(key=lambda r: (r["event_ts"], r["event_id"]))
            for index, row in enumerate(rows):
                if row["event_type"] != "open":
                    continue
                nxt = rows[index + 1] if index + 1 < len(rows) else None
                out.add(
                    (
                        row["event_id"],
                        device_id,
                        row["event_ts"],
                        nxt["event_ts"] if nxt and nxt["event_type"] == "close" else None,
                        nxt and nxt["event_ts"],
                        {"close": "closed", "open": "reopened"}[nxt["event_type"]] if nxt else None,
                        nxt is None,
                    )
                )
        return out

    def alerts(self) -> set[tuple]:
        """(alert_type, device_id, household_id, started_at, ended_at, severity)."""
        r, ref = self.rules, self.reference_at
        found: list[tuple] = []
        current = self.current()

        # repeated failures: union of [t_i, t_{i-n+1} + window] where t_i - t_{i-n+1} <= window
        fails: dict[str, list[dict]] = defaultdict(list)
        for e in self.events:
            if e["event_type"] == "fail" and e["event_ts"] <= ref:
                fails[e["device_id"]].append(e)
        n = r.repeated_failures_count
        for device_id, rows in fails.items():
            rows.sort(key=lambda x: (x["event_ts"], x["event_id"]))
            episode: list | None = None
            for i in range(n - 1, len(rows)):
                oldest, newest = rows[i - n + 1]["event_ts"], rows[i]["event_ts"]
                if newest - oldest > r.repeated_failures_window:
                    continue
                start, until = newest, oldest + r.repeated_failures_window
                if episode and start <= episode[2]:
                    episode[2], episode[4] = until, i
                else:
                    if episode:
                        found.append(self._failure_alert(device_id, episode))
                    episode = [rows[i]["household_id"], start, until, i, i]
            if episode:
                found.append(self._failure_alert(device_id, episode))

        # door left open
        for sid, device_id, opened, _closed, ended, _reason, _open in self.door_sessions():
            if opened > ref:
                continue
            span = min(ended or ref, self.alerting_until(device_id)) - opened
            if span > r.door_open:
                household = next(e["household_id"] for e in self.events if e["event_id"] == sid)
                severity = "critical" if span > r.door_open_critical else "warning"
                found.append(
                    ("door_left_open", device_id, household, opened + r.door_open, ended, severity)
                )

        # low battery and offline, from health reports up to the reference time
        reports: dict[str, list[dict]] = defaultdict(list)
        for h in self.health:
            if h["reported_at"] <= ref:
                reports[h["device_id"]].append(h)
        for device_id, rows in reports.items():
            rows.sort(key=lambda x: x["reported_at"])
            household = current[device_id]["household_id"] if device_id in current else None
            # Hysteresis: low from a reading below low_battery_pct until one at or
            # above low_battery_recovered_pct.
            low: list[dict] = []
            for index, row in enumerate(rows):
                recovered = row["battery_pct"] >= r.low_battery_recovered_pct
                if row["battery_pct"] < r.low_battery_pct or (low and not recovered):
                    low.append(row)
                if low and (recovered or index == len(rows) - 1):
                    ended = row["reported_at"] if recovered else None
                    lowest = min(x["battery_pct"] for x in low)
                    found.append(
                        (
                            "low_battery",
                            device_id,
                            household,
                            low[0]["reported_at"],
                            ended,
                            "critical" if lowest < r.critical_battery_pct else "warning",
                        )
                    )
                    low = []
        # offline, by arrival (Kafka record time, else landing time), up to the reference
        arrivals: dict[str, list[datetime]] = defaultdict(list)
        for h in self.health:
            arrived = arrived_at(h)
            if arrived <= ref:
                arrivals[h["device_id"]].append(arrived)
        for device_id, times in arrivals.items():
            times.sort()
            household = current[device_id]["household_id"] if device_id in current else None
            for index, at in enumerate(times):
                nxt = times[index + 1] if index + 1 < len(times) else None
                gap = min(nxt or ref, self.alerting_until(device_id)) - at
                if gap <= r.offline:
                    continue
                found.append(
                    (
                        "offline",
                        device_id,
                        household,
                        at + r.offline,
                        nxt,
                        "critical" if gap > r.offline_critical else "warning",
                    )
                )
        # Registered and never reported: offline from the registration on.
        for device_id, version in current.items():
            if device_id in reports or any(h["device_id"] == device_id for h in self.health):
                continue
            registered = self.versions[device_id][0]["updated_at"]
            gap = min(ref, self.alerting_until(device_id)) - registered
            if gap > r.offline:
                severity = "critical" if gap > r.offline_critical else "warning"
                found.append(
                    ("offline", device_id, version["household_id"], registered + r.offline,
                     None, severity)
                )  # fmt: skip
        out = set()
        for kind, device_id, household, started, until, severity in found:
            retired_at = self.retired_at(device_id)
            if started > ref or (retired_at is not None and started >= retired_at):
                continue
            if retired_at is not None and (until is None or retired_at <= until):
                until = retired_at  # a retired device's episodes end at its retirement
            ended = until if until is not None and until <= ref else None
            out.add((kind, device_id, household, started, ended, severity))
        return out

    def retired_at(self, device_id: str) -> datetime | None:
        """When the device was retired, if its current version says it is."""
        version = self.current().get(device_id)
        return version["updated_at"] if version and version["status"] == "retired" else None

    def alerting_until(self, device_id: str) -> datetime:
        return self.retired_at(device_id) or POS_INF

    def _failure_alert(self, device_id: str, episode: list) -> tuple:
        household, start, until, first, last = episode
        count = last - first + self.rules.repeated_failures_count
        severity = "critical" if count >= self.rules.repeated_failures_critical_count else "warning"
        return ("repeated_failures", device_id, household, start, until, severity)

    def device_status(self) -> set[tuple]:
        r, ref = self.rules, self.reference_at
        latest: dict[str, dict] = {}
        for h in self.health:
            best = latest.get(h["device_id"])
            if best is None or (h["reported_at"], best["_ingested_at"]) > (
                best["reported_at"],
                h["_ingested_at"],
            ):
                latest[h["device_id"]] = h
        windows = defaultdict(lambda: [0, 0])
        for e in self.events:
            start = window_15min(e["event_ts"])
            if ref - timedelta(hours=24) < start <= ref:
                windows[e["device_id"]][0] += 1
                windows[e["device_id"]][1] += e["event_type"] == "fail"
        last_event: dict[str, datetime] = {}
        for e in self.events:
            last_event[e["device_id"]] = max(e["event_ts"], last_event.get(e["device_id"], NEG_INF))
        out = set()
        devices = dict(self.current())
        # devices the registry never saw: shown once they report health or had events
        # in the last 24 hours (their windows), as unregistered
        for device_id in set(latest) | set(windows):
            if device_id not in self.versions:
                devices[device_id] = {"firmware_version": None}
        for device_id, v in devices.items():
            h = latest.get(device_id)
            online = bool(h and h["is_online"] and h["reported_at"] > ref - r.offline)
            total, fails = windows.get(device_id, (0, 0))
            rate = ratio(fails, total)
            battery = h and h["battery_pct"]
            signal = h and h["signal_strength_dbm"]
            if not online or (battery is not None and battery < r.critical_battery_pct):
                state = "critical"
            elif (
                (battery is not None and battery < r.low_battery_pct)
                or (signal is not None and signal < r.weak_signal_dbm)
                or (rate is not None and rate >= r.warning_failure_rate_24h)
            ):
                state = "warning"
            else:
                state = "ok"
            seen = [t for t in (h and h["reported_at"], last_event.get(device_id)) if t]
            out.add(
                (
                    device_id,
                    h["firmware_version"] if h else v["firmware_version"],
                    max(seen) if seen else None,
                    battery,
                    signal,
                    online,
                    total,
                    fails,
                    rate,
                    state,
                )
            )
        return out
