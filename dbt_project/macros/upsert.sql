{# Incremental strategy `upsert`: INSERT ... ON CONFLICT (unique_key) DO UPDATE.
   For a model whose rewritten rows keep their key and whose unique index leads with
   a time column (e.g. int_door_sessions on (opened_at, session_id)): each row costs
   one probe of that index near its right edge, where a merge or delete+insert joins
   the new rows to the whole target. The unique_key must match a unique index. #}
{% macro get_incremental_upsert_sql(arg_dict) %}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set source = arg_dict["temp_relation"] -%}
    {%- set unique_key = arg_dict["unique_key"] -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- set columns = arg_dict["dest_columns"] | map(attribute="quoted") | list -%}
insert into {{ target }} ({{ columns | join(", ") }})
select {{ columns | join(", ") }}
from {{ source }}
on conflict ({{ keys | join(", ") }}) do update set
    {%- for column in columns if column.strip('"') not in keys %}
    {{ column }} = excluded.{{ column }}{{ "," if not loop.last }}
    {%- endfor %}
{% endmacro %}
