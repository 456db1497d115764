{#- dbt_utils.union_relations: union all of relations with different columns; missing columns are null, and
    `_dbt_source_relation` says where each row came from. Needs the database to read the columns. -#}

{%- macro union_relations(relations, column_override=none, include=[], exclude=[], source_column_name='_dbt_source_relation', where=none) -%}
    {{ return(adapter.dispatch('union_relations', 'dbt_utils')(relations, column_override, include, exclude, source_column_name, where)) }}
{%- endmacro -%}

{%- macro default__union_relations(relations, column_override=none, include=[], exclude=[], source_column_name='_dbt_source_relation', where=none) -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set include_lower = include | map('lower') | list -%}
    {%- set exclude_lower = exclude | map('lower') | list -%}
    {%- set overrides = column_override or {} -%}
    {%- set ns = namespace(names=[], types=[], per_relation=[]) -%}
    {%- for relation in relations -%}
        {%- set cols = adapter.get_columns_in_relation(relation) -%}
        {%- set rel = namespace(names=[]) -%}
        {%- for col in cols -%}
            {%- set name = col.column | lower -%}
            {%- set rel.names = rel.names + [name] -%}
            {%- set keep = (include_lower | length == 0 or name in include_lower) and name not in exclude_lower -%}
            {%- if keep and name not in ns.names -%}
                {%- set ns.names = ns.names + [name] -%}
                {%- set ns.types = ns.types + [overrides.get(col.column, col.data_type)] -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set ns.per_relation = ns.per_relation + [rel.names] -%}
    {%- endfor -%}
    {%- for relation in relations %}
    {%- set present = ns.per_relation[loop.index0] %}
    (
        select
            cast({{ dbt.string_literal(relation) }} as {{ dbt.type_string() }}) as {{ adapter.quote(source_column_name) }}
            {%- for name in ns.names %},
            {% if name in present %}cast({{ adapter.quote(name) }} as {{ ns.types[loop.index0] }}){% else %}cast(null as {{ ns.types[loop.index0] }}){% endif %} as {{ adapter.quote(name) }}
            {%- endfor %}
        from {{ relation }}
        {% if where -%} where {{ where }} {%- endif %}
    )
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{%- endmacro -%}
