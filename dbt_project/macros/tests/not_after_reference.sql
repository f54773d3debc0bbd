{# A timestamp is not later than the reference time plus an allowed skew. #}
{% test not_after_reference(model, column_name, skew_minutes=5) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} > {{ reference_at() }} + interval '{{ skew_minutes | int }} minutes'
{% endtest %}
