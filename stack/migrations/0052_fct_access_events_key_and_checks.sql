-- marts.fct_access_events: a time-leading key index, a BRIN index on the build
-- stamp, and the column rules as constraints.
--
-- The key stays (event_id, event_at) (ON CONFLICT infers the index from its column
-- set); the index's columns go time first, so a build's appends (mostly new events)
-- land near each day index's right edge instead of at random pages of a random-UUID
-- b-tree, and a resend is still found in one partition by its event_at.
--
-- The accepted values of the event columns are CHECK constraints, enforced by
-- PostgreSQL on every row written (a violating row fails the build that writes it,
-- as a failing data test would); dbt's has_check_constraints test checks they are
-- there. Re-reading the rows for them on every build cost seconds per cycle.

create unique index if not exists fct_access_events_event_at_key
    on marts.fct_access_events (event_at, event_id);
drop index if exists marts.fct_access_events_event_key;

-- "Rows written since the previous build" (transformed_at > its stamp): a build's
-- rows are appended at the end of each day's heap, so a BRIN index finds them for
-- almost no write cost, where the b-tree took an entry per row.
create index if not exists fct_access_events_transformed_at_brin
    on marts.fct_access_events using brin (transformed_at);
drop index if exists marts.fct_access_events_transformed_at_idx;

alter table marts.fct_access_events
    drop constraint if exists fct_access_events_event_type_check,
    add constraint fct_access_events_event_type_check
        check (event_type in ('open', 'close', 'fail')),
    drop constraint if exists fct_access_events_trigger_source_check,
    add constraint fct_access_events_trigger_source_check
        check (trigger_source in ('app', 'keypad', 'remote', 'schedule', 'voice', 'auto_close')),
    drop constraint if exists fct_access_events_failure_reason_check,
    add constraint fct_access_events_failure_reason_check
        check (
            failure_reason in (
                'obstruction', 'sensor_fault', 'motor_stall', 'low_battery', 'connectivity',
                'unknown'
            )
        ),
    drop constraint if exists fct_access_events_fail_has_reason_check,
    add constraint fct_access_events_fail_has_reason_check
        check ((event_type = 'fail') = (failure_reason is not null));
