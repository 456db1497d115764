{#- dbt_utils generic tests. -#}

{% test unique_combination_of_columns(model, combination_of_columns, quote_columns=false) %}
    {%- set ns = namespace(columns=[]) -%}
    {%- for col in combination_of_columns -%}
        {%- set ns.columns = ns.columns + [adapter.quote(col) if quote_columns else col] -%}
    {%- endfor -%}
with validation_errors as (
    select {{ ns.columns | join(', ') }}
    from {{ model }}
    group by {{ ns.columns | join(', ') }}
    having count(*) > 1
)
select *
from validation_errors
{% endtest %}

{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
with meet_condition as (
    select *
    from {{ model }}
),
validation_errors as (
    select *
    from meet_condition
    where 1 = 2
    {%- if min_value is not none %}
        or not {{ column_name }} >{{ "=" if inclusive }} {{ min_value }}
    {%- endif %}
    {%- if max_value is not none %}
        or not {{ column_name }} <{{ "=" if inclusive }} {{ max_value }}
    {%- endif %}
)
select *
from validation_errors
{% endtest %}

{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
{% if column_name is none -%}
where not ({{ expression }})
{%- else -%}
where not ({{ column_name }} {{ expression }})
{%- endif %}
{% endtest %}
