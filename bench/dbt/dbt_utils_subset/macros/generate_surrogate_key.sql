{#- dbt_utils.generate_surrogate_key(field_list): the md5 of the fields cast to text, joined by '-', a null field
    written as '_dbt_utils_surrogate_key_null_' (or '' with the var surrogate_key_treat_nulls_as_empty_strings). -#}
{% macro generate_surrogate_key(field_list) -%}
    {{ return(adapter.dispatch('generate_surrogate_key', 'dbt_utils')(field_list)) }}
{%- endmacro %}

{% macro default__generate_surrogate_key(field_list) -%}
    {%- set null_text = '' if var('surrogate_key_treat_nulls_as_empty_strings', false) else '_dbt_utils_surrogate_key_null_' -%}
    {%- set parts = [] -%}
    {%- for field in field_list -%}
        {%- if not loop.first -%}{%- do parts.append("'-'") -%}{%- endif -%}
        {%- do parts.append("coalesce(cast(" ~ field ~ " as " ~ dbt.type_string() ~ "), '" ~ null_text ~ "')") -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(parts)) }}
{%- endmacro %}
