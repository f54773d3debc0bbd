-- marts.fct_access_events.is_rewritten: false for a row appended once, true once the
-- row has been written again in place (a retried build, a registry change moving
-- its attributes, a full refresh). int_access_events_windowed adds a window's newly
-- appended events to its stored counts instead of recounting every event of the
-- window, and recounts only a window holding a rewritten row: a late event then
-- costs one window's stored row, not a reread of the window's events.
--
-- Rows written before this migration read as rewritten (the default below), so the
-- first build after it recounts any window it touches - never a wrong sum. The
-- column's default is a constant, so adding it rewrites no partition.

alter table marts.fct_access_events
    add column if not exists is_rewritten boolean not null default true;
