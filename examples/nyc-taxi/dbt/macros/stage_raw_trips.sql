{#- On the embedded warehouse, declare the raw trips in the lake as external tables (a no-op on PostgreSQL, where
    `tripline ingest` already made the tables). -#}
{% macro stage_raw_trips() -%}
    {%- if target.type == 'tripline' -%}
        {%- set schema = var('raw_schema', 'raw') -%}
        {%- set lake = var('raw_lake_path', 'lake/raw') -%}
        {%- for service in var('services', ['green', 'yellow']) %}
CREATE OR REPLACE EXTERNAL TABLE {{ schema }}.{{ service }}_taxi_data OPTIONS (format = 'PARQUET', uris = ['{{ lake }}/{{ service }}/*']);
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
