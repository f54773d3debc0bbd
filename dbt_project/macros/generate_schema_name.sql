{# Models land in the schema their folder names (staging, intermediate, marts,
   snapshots), exactly: these are the platform's contract schemas and the roles'
   grants are on them, so no "<target>_<custom>" prefixing. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
