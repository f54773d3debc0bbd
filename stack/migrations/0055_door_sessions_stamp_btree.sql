-- intermediate.int_door_sessions: "sessions rewritten since the previous build"
-- (fct_alerts' door scope, the sessions' data tests) by a b-tree on the build
-- stamp, as the model now declares. Its BRIN matched nearly every range once the
-- upserts had spread new row versions over the table: at 22.7 M events of history
-- each of four tests read most of it (0.8 s each). dbt creates a model's indexes
-- only with its table, so a warehouse built before this gets the index here.

do $door_sessions$
declare
    brin_index regclass;
begin
    if to_regclass('intermediate.int_door_sessions') is null then
        return;  -- not built yet: dbt creates it with the b-tree
    end if;
    for brin_index in
        select indexes.indexrelid::regclass
        from pg_index as indexes
        join pg_class as index_class on index_class.oid = indexes.indexrelid
        join pg_am as methods on methods.oid = index_class.relam
        where indexes.indrelid = 'intermediate.int_door_sessions'::regclass
          and methods.amname = 'brin'
    loop
        execute format('drop index %s', brin_index);
    end loop;
    execute 'create index if not exists int_door_sessions_transformed_at_idx'
        ' on intermediate.int_door_sessions (transformed_at)';
end;
$door_sessions$;
