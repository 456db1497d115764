//! Macro packages shipped inside tripline: dbt's own macros (naming, generic tests, cross-database macros)
//! and the commonly used dbt_utils macros, so a project listing `dbt-labs/dbt_utils` works without `dbt deps`.

/// dbt's internal macros, as the package `dbt`.
pub(crate) const DBT_MACROS: &[(&str, &str)] = &[
    ("macros/naming.sql", include_str!("macros/dbt/naming.sql")),
    (
        "macros/generic_tests.sql",
        include_str!("macros/dbt/generic_tests.sql"),
    ),
    (
        "macros/cross_db.sql",
        include_str!("macros/dbt/cross_db.sql"),
    ),
];

/// The dbt_utils macros tripline provides, as the package `dbt_utils`.
pub(crate) const DBT_UTILS_MACROS: &[(&str, &str)] = &[
    (
        "macros/surrogate_key.sql",
        include_str!("macros/dbt_utils/surrogate_key.sql"),
    ),
    ("macros/star.sql", include_str!("macros/dbt_utils/star.sql")),
    (
        "macros/union_relations.sql",
        include_str!("macros/dbt_utils/union_relations.sql"),
    ),
    (
        "macros/date_spine.sql",
        include_str!("macros/dbt_utils/date_spine.sql"),
    ),
    (
        "macros/tests.sql",
        include_str!("macros/dbt_utils/tests.sql"),
    ),
];
