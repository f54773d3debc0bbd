-- Device-alert notifications (DAG smart_access_alert_notifications, scheduled on the
-- fct_alerts asset). One row per alert episode and transition, keyed by the stable
-- alert_id: a transition is claimed here before it is sent, so a retried or repeated
-- run never sends it again.
--   status  new        queued by this run
--           held       in quiet hours (a warning), or its 'opened' is not sent yet
--           skipped    no notifier configured: recorded, never sent later
--           sending    claimed, POST under way (left so by a crash: never resent,
--                      shown as unconfirmed)
--           sent       the notifier answered 2xx
--           failed     not delivered; retried by the next runs up to the attempt limit
--           throttled  the household's hourly limit was reached: recorded, not sent
--           gave_up    failed on every attempt
-- ops.alert_notification_state keeps how far the notifier has read fct_alerts (its
-- build stamp), so a run reads only the alerts the builds since changed.

create table if not exists ops.alert_notifications (
    alert_id      text        not null,
    transition    text        not null check (transition in ('opened', 'closed')),
    alert_type    text        not null,
    severity      text        not null,
    device_id     text        not null,
    household_id  text,
    started_at    timestamptz not null,
    ended_at      timestamptz,
    status        text        not null
        check (status in (
            'new', 'held', 'skipped', 'sending', 'sent', 'failed', 'throttled', 'gave_up'
        )),
    attempts      integer     not null default 0,
    last_error    text,
    first_seen_at timestamptz not null default clock_timestamp(),
    updated_at    timestamptz not null default clock_timestamp(),
    sent_at       timestamptz,
    dag_run_id    text,
    primary key (alert_id, transition)
);

create index if not exists alert_notifications_household_sent_idx
    on ops.alert_notifications (household_id, sent_at) where status = 'sent';
create index if not exists alert_notifications_pending_idx
    on ops.alert_notifications (status) where status in ('new', 'held', 'failed');
create index if not exists alert_notifications_updated_at_idx
    on ops.alert_notifications (updated_at);

create table if not exists ops.alert_notification_state (
    singleton            boolean     primary key default true check (singleton),
    alerts_read_through  timestamptz not null,
    updated_at           timestamptz not null default clock_timestamp()
);

grant select, insert, update on ops.alert_notifications, ops.alert_notification_state
    to smart_access_transformer;
grant select on ops.alert_notifications, ops.alert_notification_state to smart_access_analyst;

-- The notifier reads fct_alerts by its build stamp; the model creates this index on a
-- new warehouse, this adds it to one built before.
do $$
begin
    if to_regclass('marts.fct_alerts') is not null then
        execute 'create index if not exists fct_alerts_transformed_at_idx'
            ' on marts.fct_alerts (transformed_at)';
    end if;
end
$$;
