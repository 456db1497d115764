{#- The generic test dbt_utils.expression_is_true: fails on every row where the expression (applied to the column
    when the test is on a column) is not true. -#}
{% test expression_is_true(model, expression, column_name=none) %}
    {{ return(adapter.dispatch('test_expression_is_true', 'dbt_utils')(model, expression, column_name)) }}
{% endtest %}

{% macro default__test_expression_is_true(model, expression, column_name) %}
select {{ '*' if should_store_failures() else '1 as failing' }}
from {{ model }}
where not (
    {%- if column_name is none %} {{ expression }} {% else %} {{ column_name }} {{ expression }} {% endif -%}
)
{% endmacro %}
