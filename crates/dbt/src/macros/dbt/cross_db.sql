{#- dbt's cross-database macros: a default, the postgres variant where PostgreSQL differs, and a tripline
    variant where the embedded warehouse (DataFusion SQL) differs. -#}

{% macro date_trunc(datepart, date) -%}
    {{ return(adapter.dispatch('date_trunc', 'dbt')(datepart, date)) }}
{%- endmacro %}

{% macro default__date_trunc(datepart, date) -%}
    date_trunc('{{ datepart }}', {{ date }})
{%- endmacro %}

{% macro datediff(first_date, second_date, datepart) -%}
    {{ return(adapter.dispatch('datediff', 'dbt')(first_date, second_date, datepart)) }}
{%- endmacro %}

{% macro default__datediff(first_date, second_date, datepart) -%}
    datediff({{ datepart }}, {{ first_date }}, {{ second_date }})
{%- endmacro %}

{% macro postgres__datediff(first_date, second_date, datepart) -%}
    {%- if datepart == 'year' -%}
        (date_part('year', ({{ second_date }})::date) - date_part('year', ({{ first_date }})::date))
    {%- elif datepart == 'quarter' -%}
        ({{ datediff(first_date, second_date, 'year') }} * 4 + date_part('quarter', ({{ second_date }})::date) - date_part('quarter', ({{ first_date }})::date))
    {%- elif datepart == 'month' -%}
        ({{ datediff(first_date, second_date, 'year') }} * 12 + date_part('month', ({{ second_date }})::date) - date_part('month', ({{ first_date }})::date))
    {%- elif datepart == 'day' -%}
        (({{ second_date }})::date - ({{ first_date }})::date)
    {%- elif datepart == 'week' -%}
        ({{ datediff(first_date, second_date, 'day') }} / 7 + case
            when date_part('dow', ({{ first_date }})::timestamp) <= date_part('dow', ({{ second_date }})::timestamp) then
                case when {{ first_date }} <= {{ second_date }} then 0 else -1 end
            else
                case when {{ first_date }} <= {{ second_date }} then 1 else 0 end
        end)
    {%- elif datepart == 'hour' -%}
        ({{ datediff(first_date, second_date, 'day') }} * 24 + date_part('hour', ({{ second_date }})::timestamp) - date_part('hour', ({{ first_date }})::timestamp))
    {%- elif datepart == 'minute' -%}
        ({{ datediff(first_date, second_date, 'hour') }} * 60 + date_part('minute', ({{ second_date }})::timestamp) - date_part('minute', ({{ first_date }})::timestamp))
    {%- elif datepart == 'second' -%}
        ({{ datediff(first_date, second_date, 'minute') }} * 60 + floor(date_part('second', ({{ second_date }})::timestamp)) - floor(date_part('second', ({{ first_date }})::timestamp)))
    {%- else -%}
        {{ exceptions.raise_compiler_error("datediff: unsupported datepart for postgres: " ~ datepart) }}
    {%- endif -%}
{%- endmacro %}

{% macro tripline__datediff(first_date, second_date, datepart) -%}
    {%- set seconds = {'week': 604800, 'day': 86400, 'hour': 3600, 'minute': 60, 'second': 1} -%}
    {%- if datepart == 'year' -%}
        cast(date_part('year', {{ second_date }}) - date_part('year', {{ first_date }}) as bigint)
    {%- elif datepart == 'quarter' -%}
        cast((date_part('year', {{ second_date }}) - date_part('year', {{ first_date }})) * 4 + date_part('quarter', {{ second_date }}) - date_part('quarter', {{ first_date }}) as bigint)
    {%- elif datepart == 'month' -%}
        cast((date_part('year', {{ second_date }}) - date_part('year', {{ first_date }})) * 12 + date_part('month', {{ second_date }}) - date_part('month', {{ first_date }}) as bigint)
    {%- elif datepart in seconds -%}
        cast((date_part('epoch', date_trunc('{{ datepart }}', cast({{ second_date }} as timestamp))) - date_part('epoch', date_trunc('{{ datepart }}', cast({{ first_date }} as timestamp)))) / {{ seconds[datepart] }} as bigint)
    {%- else -%}
        {{ exceptions.raise_compiler_error("datediff: unsupported datepart for the embedded warehouse: " ~ datepart) }}
    {%- endif -%}
{%- endmacro %}

{% macro dateadd(datepart, interval, from_date_or_timestamp) -%}
    {{ return(adapter.dispatch('dateadd', 'dbt')(datepart, interval, from_date_or_timestamp)) }}
{%- endmacro %}

{% macro default__dateadd(datepart, interval, from_date_or_timestamp) -%}
    dateadd({{ datepart }}, {{ interval }}, {{ from_date_or_timestamp }})
{%- endmacro %}

{% macro postgres__dateadd(datepart, interval, from_date_or_timestamp) -%}
    {{ from_date_or_timestamp }} + ((interval '1 {{ datepart }}') * ({{ interval }}))
{%- endmacro %}

{% macro tripline__dateadd(datepart, interval, from_date_or_timestamp) -%}
    {%- set text = interval | string | trim -%}
    {%- set seconds = {'week': 604800, 'day': 86400, 'hour': 3600, 'minute': 60, 'second': 1} -%}
    {%- if text.lstrip('-').isdigit() -%}
        ({{ from_date_or_timestamp }} + interval '{{ text }} {{ datepart }}')
    {%- elif datepart in seconds -%}
        to_timestamp_seconds(cast(date_part('epoch', {{ from_date_or_timestamp }}) + ({{ interval }}) * {{ seconds[datepart] }} as bigint))
    {%- else -%}
        {{ exceptions.raise_compiler_error("not supported yet: dateadd by a non-literal number of " ~ datepart ~ "s on the embedded warehouse") }}
    {%- endif -%}
{%- endmacro %}

{% macro safe_cast(field, type) -%}
    {{ return(adapter.dispatch('safe_cast', 'dbt')(field, type)) }}
{%- endmacro %}

{% macro default__safe_cast(field, type) -%}
    cast({{ field }} as {{ type }})
{%- endmacro %}

{% macro tripline__safe_cast(field, type) -%}
    try_cast({{ field }} as {{ type }})
{%- endmacro %}

{% macro concat(fields) -%}
    {{ return(adapter.dispatch('concat', 'dbt')(fields)) }}
{%- endmacro %}

{% macro default__concat(fields) -%}
    concat({{ fields | join(', ') }})
{%- endmacro %}

{% macro postgres__concat(fields) -%}
    {{ fields | join(' || ') }}
{%- endmacro %}

{% macro hash(field) -%}
    {{ return(adapter.dispatch('hash', 'dbt')(field)) }}
{%- endmacro %}

{% macro default__hash(field) -%}
    md5(cast({{ field }} as {{ dbt.type_string() }}))
{%- endmacro %}

{% macro current_timestamp() -%}
    {{ return(adapter.dispatch('current_timestamp', 'dbt')()) }}
{%- endmacro %}

{% macro default__current_timestamp() -%}
    current_timestamp
{%- endmacro %}

{% macro postgres__current_timestamp() -%}
    now()
{%- endmacro %}

{% macro tripline__current_timestamp() -%}
    now()
{%- endmacro %}

{% macro type_string() -%}
    {{ return(adapter.dispatch('type_string', 'dbt')()) }}
{%- endmacro %}

{% macro default__type_string() -%}
    varchar
{%- endmacro %}

{% macro type_int() -%}
    {{ return(adapter.dispatch('type_int', 'dbt')()) }}
{%- endmacro %}

{% macro default__type_int() -%}
    integer
{%- endmacro %}

{% macro type_bigint() -%}
    {{ return(adapter.dispatch('type_bigint', 'dbt')()) }}
{%- endmacro %}

{% macro default__type_bigint() -%}
    bigint
{%- endmacro %}

{% macro type_timestamp() -%}
    {{ return(adapter.dispatch('type_timestamp', 'dbt')()) }}
{%- endmacro %}

{% macro default__type_timestamp() -%}
    timestamp
{%- endmacro %}

{% macro postgres__type_timestamp() -%}
    timestamp without time zone
{%- endmacro %}

{% macro type_numeric() -%}
    {{ return(adapter.dispatch('type_numeric', 'dbt')()) }}
{%- endmacro %}

{% macro default__type_numeric() -%}
    numeric(28,6)
{%- endmacro %}

{% macro tripline__type_numeric() -%}
    decimal(28,6)
{%- endmacro %}

{% macro type_float() -%}
    {{ return(adapter.dispatch('type_float', 'dbt')()) }}
{%- endmacro %}

{% macro default__type_float() -%}
    float
{%- endmacro %}

{% macro tripline__type_float() -%}
    double
{%- endmacro %}

{% macro type_boolean() -%}
    {{ return(adapter.dispatch('type_boolean', 'dbt')()) }}
{%- endmacro %}

{% macro default__type_boolean() -%}
    boolean
{%- endmacro %}

{% macro string_literal(value) -%}
    '{{ value | replace("'", "''") }}'
{%- endmacro %}

{% macro escape_single_quotes(expression) -%}
    {{ expression | replace("'", "''") }}
{%- endmacro %}
