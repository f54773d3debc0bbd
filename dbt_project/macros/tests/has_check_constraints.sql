{# The relation has validated CHECK constraints with these names, so PostgreSQL
   itself rejects a row that breaks them on every write (see migration 0052): the
   rules hold for the whole history at no read cost. Reads the catalog only. Fails
   with one row per missing constraint. #}
{% test has_check_constraints(model, names) %}
select wanted.name as missing_check_constraint
from unnest(array[
    {%- for name in names %}'{{ name }}'{{ "," if not loop.last }}{% endfor -%}
]::text[]) as wanted (name)
where not exists (
    select 1
    from pg_constraint as constraints
    inner join pg_class as tables on tables.oid = constraints.conrelid
    inner join pg_namespace as schemas on schemas.oid = tables.relnamespace
    where schemas.nspname = '{{ model.schema }}'
      and tables.relname = '{{ model.identifier }}'
      and constraints.contype = 'c'
      and constraints.convalidated
      and constraints.conname = wanted.name
)
{% endtest %}
