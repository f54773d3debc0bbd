{% macro trigger_sources() %}
    {#- The trigger sources of the event contract (streaming/contracts.py TriggerSource;
        accepted_values on fct_access_events.trigger_source). The windowed model and the
        hourly/daily rollups carry one `<source>_trigger_count` column per source, so the
        dashboard's trigger-source series never reads the fact. -#}
    {{ return(['app', 'keypad', 'remote', 'schedule', 'voice', 'auto_close']) }}
{% endmacro %}
