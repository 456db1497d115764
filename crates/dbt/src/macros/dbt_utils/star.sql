{#- dbt_utils.star: the columns of a relation, minus `except`, optionally aliased and prefixed. Needs the
    database (the columns are read from it); while parsing it renders as `*`. -#}

{%- macro get_filtered_columns_in_relation(from, except=[]) -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set except_lower = except | map('lower') | list -%}
    {%- set ns = namespace(columns=[]) -%}
    {%- for col in adapter.get_columns_in_relation(from) -%}
        {%- if col.column | lower not in except_lower -%}
            {%- set ns.columns = ns.columns + [col.column] -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(ns.columns) }}
{%- endmacro -%}

{%- macro star(from, relation_alias=false, except=[], prefix='', suffix='', quote_identifiers=true) -%}
    {{ return(adapter.dispatch('star', 'dbt_utils')(from, relation_alias, except, prefix, suffix, quote_identifiers)) }}
{%- endmacro -%}

{%- macro default__star(from, relation_alias=false, except=[], prefix='', suffix='', quote_identifiers=true) -%}
    {%- if not execute -%}
        {{ return('*') }}
    {%- endif -%}
    {%- set columns = dbt_utils.get_filtered_columns_in_relation(from, except) -%}
    {%- if columns | length == 0 -%}
        {{ return('/* no columns returned from star() macro */') }}
    {%- endif -%}
    {%- for col in columns -%}
        {%- if relation_alias %}{{ relation_alias }}.{% endif -%}
        {%- if quote_identifiers -%}{{ adapter.quote(col) }}{%- else -%}{{ col }}{%- endif -%}
        {%- if prefix != '' or suffix != '' %} as {% if quote_identifiers %}{{ adapter.quote(prefix ~ col ~ suffix) }}{% else %}{{ prefix ~ col ~ suffix }}{% endif %}{% endif -%}
        {%- if not loop.last %},
    {% endif -%}
    {%- endfor -%}
{%- endmacro -%}
