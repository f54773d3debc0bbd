{# The relation has a unique index on exactly these columns (in this order), so
   PostgreSQL itself rejects a duplicate on every write: cheaper and stronger than
   re-reading the whole history for duplicates on each build. Reads the catalog only.
   Fails with one row when the index is missing. #}
{% test has_unique_index(model, column_name=none, columns=none) %}
{%- set key_columns = columns if columns is not none else [column_name] -%}
with

wanted as (

    select array[
        {%- for column in key_columns %}'{{ column }}'{{ "," if not loop.last }}{% endfor -%}
    ]::text[] as key_columns

),

unique_indexes as (

    select array(
        select attributes.attname::text
        from unnest(indexes.indkey::int2[]) with ordinality as keys(attnum, position)
        inner join pg_attribute as attributes
            on attributes.attrelid = indexes.indrelid
            and attributes.attnum = keys.attnum
        order by keys.position
    ) as key_columns
    from pg_index as indexes
    inner join pg_class as tables on tables.oid = indexes.indrelid
    inner join pg_namespace as schemas on schemas.oid = tables.relnamespace
    where schemas.nspname = '{{ model.schema }}'
      and tables.relname = '{{ model.identifier }}'
      and indexes.indisunique
      and indexes.indisvalid
      and indexes.indpred is null

)

select wanted.key_columns as missing_unique_index
from wanted
where not exists (
    select 1 from unique_indexes
    where unique_indexes.key_columns = wanted.key_columns
)
{% endtest %}
