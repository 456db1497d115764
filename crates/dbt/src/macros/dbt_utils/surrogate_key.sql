{#- dbt_utils.generate_surrogate_key: an md5 over the fields, nulls replaced by a marker, '-' between fields. -#}

{%- macro generate_surrogate_key(field_list) -%}
    {{ return(adapter.dispatch('generate_surrogate_key', 'dbt_utils')(field_list)) }}
{%- endmacro -%}

{%- macro default__generate_surrogate_key(field_list) -%}
    {%- if var('surrogate_key_treat_nulls_as_empty_strings', false) -%}
        {%- set null_marker = '' -%}
    {%- else -%}
        {%- set null_marker = '_dbt_utils_surrogate_key_null_' -%}
    {%- endif -%}
    {%- set ns = namespace(fields=[]) -%}
    {%- for field in field_list -%}
        {%- set ns.fields = ns.fields + ["coalesce(cast(" ~ field ~ " as " ~ dbt.type_string() ~ "), '" ~ null_marker ~ "')"] -%}
        {%- if not loop.last -%}
            {%- set ns.fields = ns.fields + ["'-'"] -%}
        {%- endif -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(ns.fields)) }}
{%- endmacro -%}

{#- The pre-1.0 name, kept so older projects compile: nulls become empty strings, as it did then. -#}
{%- macro surrogate_key(field_list) -%}
    {%- set fields = [field_list] if field_list is string else field_list -%}
    {%- set ns = namespace(fields=[]) -%}
    {%- for field in fields -%}
        {%- set ns.fields = ns.fields + ["coalesce(cast(" ~ field ~ " as " ~ dbt.type_string() ~ "), '')"] -%}
        {%- if not loop.last -%}
            {%- set ns.fields = ns.fields + ["'-'"] -%}
        {%- endif -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(ns.fields)) }}
{%- endmacro -%}
