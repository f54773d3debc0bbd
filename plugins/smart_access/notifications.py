"""Device-alert notifications: every alert episode that opened or closed since the
last run, sent once to the notifier (a webhook), recorded in `ops.alert_notifications`.

Run by the DAG `smart_access_alert_notifications`, scheduled on the `marts.fct_alerts`
asset (after every successful build). One run:

1. reads the alerts the builds since the previous run wrote (`fct_alerts` by its build
   stamp, from `ops.alert_notification_state`) and queues one row per episode and
   transition (`opened`; `closed` once it ended), keyed by the stable `alert_id`, in
   the same transaction that moves the read position: nothing is queued twice, nothing
   between two runs is skipped;
2. works the queue (new, held, failed): a warning in quiet hours is held until they
   end (critical alerts are always sent); over the household's hourly limit it is
   recorded as throttled; otherwise it is claimed (`sending`, committed) before the
   POST and marked `sent` or `failed` after it. A retried or repeated run therefore
   never sends a transition twice; a run killed between the POST and the mark leaves
   `sending`, which is never resent (at most once, shown as unconfirmed); a failed
   POST is retried by the next runs up to `max_attempts`.

Settings (environment):
- `SMART_ACCESS_NOTIFY_WEBHOOK_URL` (else `SMART_ACCESS_ALERT_WEBHOOK_URL`): where to
  POST (JSON with a Slack-compatible `text`); neither set: recorded as `skipped`, and
  never sent later;
- `SMART_ACCESS_NOTIFY_QUIET_HOURS` (unset), e.g. `22:00-07:00`: warnings wait until
  the end, in `SMART_ACCESS_NOTIFY_TIMEZONE` (UTC);
- `SMART_ACCESS_NOTIFY_MAX_PER_HOUSEHOLD_HOUR` (10; 0 = no limit);
- `SMART_ACCESS_NOTIFY_MAX_ATTEMPTS` (5): POSTs of one notification before `gave_up`;
- `SMART_ACCESS_NOTIFY_FIRST_LOOKBACK_HOURS` (1): how far back the very first run
  reads (not all history).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyHttpUrl, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Notification", "NotifySettings", "notify", "payload"]

logger = logging.getLogger(__name__)

_LOCK_KEY = 0x5A0A1E27  # one notifier run at a time
_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_LABELS = {
    "door_left_open": "door left open",
    "repeated_failures": "repeated failures",
    "low_battery": "low battery",
    "offline": "offline",
}


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMART_ACCESS_NOTIFY_", extra="ignore")

    webhook_url: AnyHttpUrl | None = None
    quiet_hours: str | None = None
    timezone: str = "UTC"
    max_per_household_hour: int = Field(default=10, ge=0)
    max_attempts: int = Field(default=5, ge=1)
    first_lookback_hours: float = Field(default=1.0, ge=0)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not _QUIET.match(value):
            raise ValueError(f"{value!r} is not HH:MM-HH:MM, e.g. 22:00-07:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone, e.g. Europe/Berlin") from None
        return value

    def quiet_at(self, moment: datetime) -> bool:
        if self.quiet_hours is None:
            return False
        start_text, end_text = self.quiet_hours.split("-")
        start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
        local = moment.astimezone(ZoneInfo(self.timezone)).time()
        if start <= end:
            return start <= local < end
        return local >= start or local < end  # over midnight


@dataclass(frozen=True)
class Notification:
    alert_id: str
    transition: str
    alert_type: str
    severity: str
    device_id: str
    household_id: str | None
    started_at: datetime
    ended_at: datetime | None
    status: str
    attempts: int

    @property
    def notification_id(self) -> str:
        return f"{self.alert_id}:{self.transition}"


def payload(n: Notification) -> dict[str, Any]:
    """The webhook's JSON: `text` for Slack-compatible receivers, the fields for any
    other; `notification_id` is the same on every attempt, for a receiver to dedupe."""
    label = _LABELS.get(n.alert_type, n.alert_type)
    where = f"device {n.device_id}" + (f" (household {n.household_id})" if n.household_id else "")
    if n.transition == "opened":
        text = f"[{n.severity}] {label} on {where} since {n.started_at:%Y-%m-%d %H:%M} UTC"
    else:
        assert n.ended_at is not None
        minutes = (n.ended_at - n.started_at).total_seconds() / 60
        text = (
            f"[resolved] {label} on {where} ended {n.ended_at:%Y-%m-%d %H:%M} UTC "
            f"after {minutes:.0f} min"
        )
    return {
        "text": text,
        "notification_id": n.notification_id,
        "transition": n.transition,
        "alert_id": n.alert_id,
        "alert_type": n.alert_type,
        "severity": n.severity,
        "device_id": n.device_id,
        "household_id": n.household_id,
        "started_at": n.started_at.isoformat(),
        "ended_at": n.ended_at.isoformat() if n.ended_at else None,
    }


_QUEUE_NEW = """
with changed as (
    select alert_id, alert_type, severity, device_id, household_id, started_at, ended_at
    from marts.fct_alerts
    where transformed_at > %(since)s
),
transitions as (
    select changed.*, 'opened' as transition from changed
    union all
    select changed.*, 'closed' from changed where ended_at is not null
)
insert into ops.alert_notifications as queued (
    alert_id, transition, alert_type, severity, device_id, household_id, started_at,
    ended_at, status, dag_run_id
)
select alert_id, transition, alert_type, severity, device_id, household_id, started_at,
       ended_at, 'new', %(run_id)s
from transitions
on conflict (alert_id, transition) do update
    -- a transition not sent yet takes the episode's newest attributes
    set severity = excluded.severity, ended_at = excluded.ended_at,
        household_id = excluded.household_id, updated_at = clock_timestamp()
    where queued.status in ('new', 'held', 'failed')
"""

_PENDING = """
select alert_id, transition, alert_type, severity, device_id, household_id, started_at,
       ended_at, status, attempts
from ops.alert_notifications
where status in ('new', 'held', 'failed')
order by started_at, alert_id, transition desc  -- 'opened' before 'closed'
"""


def _set(cur: Any, n: Notification, status: str, **fields: Any) -> None:
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    cur.execute(
        f"update ops.alert_notifications set status = %(status)s, updated_at = clock_timestamp()"
        f"{', ' + assignments if assignments else ''}"
        " where alert_id = %(alert_id)s and transition = %(transition)s",
        {"status": status, "alert_id": n.alert_id, "transition": n.transition, **fields},
    )


def notify(
    conn: Any,
    settings: NotifySettings,
    send: Callable[[str, dict[str, Any]], str] | None,
    *,
    run_id: str,
    now: datetime | None = None,
) -> Counter[str]:
    """One notifier run (see the module's doc); returns the count of each outcome.
    `send(url, payload)` returns a status starting with "sent" when delivered."""
    now = now or datetime.now(UTC)
    outcome: Counter[str] = Counter()
    with conn.cursor() as cur:
        cur.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
    conn.commit()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select alerts_read_through from ops.alert_notification_state for update")
            row = cur.fetchone()
            since = row[0] if row else now - timedelta(hours=settings.first_lookback_hours)
            cur.execute(
                "select max(transformed_at) from marts.fct_alerts where transformed_at > %s",
                (since,),
            )
            through = cur.fetchone()[0] or since
            cur.execute(_QUEUE_NEW, {"since": since, "run_id": run_id})
            outcome["queued"] = max(cur.rowcount, 0)
            cur.execute(
                """
                insert into ops.alert_notification_state (singleton, alerts_read_through)
                values (true, %(through)s)
                on conflict (singleton) do update
                    set alerts_read_through = excluded.alerts_read_through,
                        updated_at = clock_timestamp()
                """,
                {"through": through},
            )
            cur.execute(_PENDING)
            pending = [Notification(*r) for r in cur.fetchall()]
        quiet = settings.quiet_at(now)
        waiting: set[str] = set()  # episodes whose 'opened' is not sent: hold their 'closed'
        for n in pending:
            outcome[_work(conn, settings, send, n, run_id, now, quiet, waiting)] += 1
    finally:
        with conn.cursor() as cur:
            cur.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
        conn.commit()
    return outcome


def _work(
    conn: Any,
    settings: NotifySettings,
    send: Callable[[str, dict[str, Any]], str] | None,
    n: Notification,
    run_id: str,
    now: datetime,
    quiet: bool,
    waiting: set[str],
) -> str:
    """Decide, claim and send one notification; returns its new status."""
    with conn, conn.cursor() as cur:
        if n.transition == "closed" and n.alert_id in waiting:
            _set(cur, n, "held")
            return "held"
        if send is None or settings.webhook_url is None:
            # recorded, never sent later: configuring a notifier does not replay history
            _set(cur, n, "skipped", last_error=_NO_NOTIFIER)
            return "skipped"
        if quiet and n.severity != "critical":
            _set(cur, n, "held", last_error="quiet hours")
            waiting.add(n.alert_id)
            return "held"
        if settings.max_per_household_hour and n.household_id is not None:
            cur.execute(
                "select count(*) from ops.alert_notifications where household_id = %s"
                " and status = 'sent' and sent_at > %s",
                (n.household_id, now - timedelta(hours=1)),
            )
            if cur.fetchone()[0] >= settings.max_per_household_hour:
                _set(cur, n, "throttled", last_error="household limit per hour reached")
                return "throttled"
        _set(cur, n, "sending", attempts=n.attempts + 1, dag_run_id=run_id)
    status = send(str(settings.webhook_url), payload(n))
    with conn, conn.cursor() as cur:
        if status.startswith("sent"):
            _set(cur, n, "sent", sent_at=datetime.now(UTC), last_error=None)
            return "sent"
        final = "gave_up" if n.attempts + 1 >= settings.max_attempts else "failed"
        _set(cur, n, final, last_error=status[:500])
        waiting.add(n.alert_id)
        logger.warning("notification %s not delivered: %s", n.notification_id, status)
        return final


_NO_NOTIFIER = (
    "no notifier: set SMART_ACCESS_NOTIFY_WEBHOOK_URL (or SMART_ACCESS_ALERT_WEBHOOK_URL)"
)
