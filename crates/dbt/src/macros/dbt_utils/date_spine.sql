{#- dbt_utils.date_spine: one row per `datepart` from start_date (included) to end_date (excluded). -#}

{%- macro date_spine(datepart, start_date, end_date) -%}
    {{ return(adapter.dispatch('date_spine', 'dbt_utils')(datepart, start_date, end_date)) }}
{%- endmacro -%}

{%- macro default__date_spine(datepart, start_date, end_date) -%}
select date_{{ datepart }}
from (
    select generate_series(cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval '1 {{ datepart }}') as date_{{ datepart }}
) as spine
where date_{{ datepart }} < cast({{ end_date }} as timestamp)
{%- endmacro -%}

{%- macro tripline__date_spine(datepart, start_date, end_date) -%}
select date_{{ datepart }}
from (
    select unnest(generate_series(cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval '1 {{ datepart }}')) as date_{{ datepart }}
) as spine
where date_{{ datepart }} < cast({{ end_date }} as timestamp)
{%- endmacro -%}
