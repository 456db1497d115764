//! The names and unique-id hash dbt-core gives a generic test, so a test has the same node name, unique id, alias
//! and compiled file in tripline as in dbt (selectors such as `-s relationships_fact_trips_...`, manifest
//! comparisons and run results line up).
//!
//! dbt-core (`parser/generic_test_builders.py`, `parser/schema_generic_tests.py`):
//! - full name: `<type>_<target>_<args>`, the arguments sorted by name (`model` left out, `column_name` in),
//!   each flattened one level (a list's items, a mapping's values) as Python's `str()`, every run of characters
//!   other than `[0-9a-zA-Z_]` replaced by one `_`, joined with `__`;
//! - short name (compiled file, relation alias), when the full one has 64 characters or more: the first 30
//!   characters of `<type>_<target>` and the md5 of the full name;
//! - unique id hash: the last 10 hex digits of md5(full name + Python `repr` of the test metadata with every leaf
//!   turned into text and mappings sorted by key).

use md5::{Digest, Md5};
use serde_json::Value;

use crate::config::ConfigMap;

/// The two names of a generic test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GenericTestNames {
    /// Node name, unique id and fqn.
    pub full: String,
    /// Compiled file and relation alias (the full name when it is shorter than 64 characters).
    pub short: String,
}

/// dbt's names of a generic test of type `test_type` (`unique`, `dbt_utils_expression_is_true`,
/// `source_not_null`) on `target` (a model name, or `<source>_<table>`) with `args` (the test's arguments and
/// `column_name`, without `model`).
pub(crate) fn generic_test_names(
    test_type: &str,
    target: &str,
    args: &ConfigMap,
) -> GenericTestNames {
    let mut keys: Vec<&String> = args.keys().filter(|k| *k != "model").collect();
    keys.sort();
    let mut flat = Vec::new();
    for key in keys {
        match &args[key] {
            Value::Array(items) => flat.extend(items.iter().map(python_str)),
            Value::Object(map) => flat.extend(map.values().map(python_str)),
            other => flat.push(python_str(other)),
        }
    }
    let unique = flat.iter().map(|a| clean(a)).collect::<Vec<_>>().join("__");
    let identifier = format!("{test_type}_{target}");
    let full = format!("{identifier}_{unique}");
    let short = if full.chars().count() >= 64 {
        let head: String = identifier.chars().take(30).collect();
        format!("{head}_{}", md5_hex(&full))
    } else {
        full.clone()
    };
    GenericTestNames { full, short }
}

/// The 10-character hash that ends a generic test's unique id: md5 of the name and the test metadata
/// (`{"kwargs": .., "name": .., "namespace": ..}`, kwargs with `column_name` and `model`) as dbt-core prints it.
pub(crate) fn generic_test_hash(
    name: &str,
    test_name: &str,
    namespace: Option<&str>,
    kwargs: &ConfigMap,
) -> String {
    let mut metadata = ConfigMap::new();
    metadata.insert("kwargs".into(), Value::Object(kwargs.clone()));
    metadata.insert("name".into(), Value::String(test_name.into()));
    metadata.insert(
        "namespace".into(),
        namespace.map_or(Value::Null, |n| Value::String(n.into())),
    );
    let digest = md5_hex(&format!(
        "{name}{}",
        hashable_repr(&Value::Object(metadata))
    ));
    digest[digest.len() - 10..].to_string()
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// dbt's `re.sub("[^0-9a-zA-Z_]+", "_", arg)`.
fn clean(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut in_run = false;
    for c in arg.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// Python's `str()` of a YAML value as dbt-core holds it.
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

/// Python's `repr()` of a YAML value as dbt-core holds it (mappings in their own order).
fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => python_number(n),
        Value::String(s) => python_str_repr(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", python_str_repr(k), python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `repr()` of dbt's hashable form of the metadata: leaves become `str(leaf)`, mappings are sorted by key.
fn hashable_repr(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(hashable_repr)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            format!(
                "{{{}}}",
                keys.iter()
                    .map(|k| format!("{}: {}", python_str_repr(k), hashable_repr(&map[*k])))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        leaf => python_str_repr(&python_str(leaf)),
    }
}

fn python_number(n: &serde_json::Number) -> String {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
            return format!("{f:.1}");
        }
        return f.to_string();
    }
    n.to_string()
}

/// Python's `repr()` of a str: single quotes unless the text holds one and no double quote.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: serde_json::Value) -> ConfigMap {
        v.as_object().unwrap().clone()
    }

    fn model(name: &str) -> String {
        format!("{{{{ get_where_subquery(ref('{name}')) }}}}")
    }

    // Expected values: dbt-core 1.12.0's manifest of examples/nyc-taxi/dbt (bench/dbt/run.py compares them).

    #[test]
    fn short_test_names_are_the_full_name_and_hash_like_dbt_core() {
        let args = map(serde_json::json!({"column_name": "tripid"}));
        let names = generic_test_names("unique", "fact_trips", &args);
        assert_eq!(names.full, "unique_fact_trips_tripid");
        assert_eq!(names.short, names.full);
        let mut kwargs = args.clone();
        kwargs.insert("model".into(), model("fact_trips").into());
        assert_eq!(
            generic_test_hash(&names.full, "unique", None, &kwargs),
            "77e4d1dd79"
        );
    }

    #[test]
    fn long_test_names_are_truncated_with_the_md5_of_the_full_name_like_dbt_core() {
        let args = map(serde_json::json!({
            "to": "ref('dim_zones')", "field": "locationid", "column_name": "pickup_locationid"
        }));
        let names = generic_test_names("relationships", "fact_trips", &args);
        assert_eq!(
            names.full,
            "relationships_fact_trips_pickup_locationid__locationid__ref_dim_zones_"
        );
        assert_eq!(
            names.short,
            "relationships_fact_trips_9733dea7f952ea01127c2b766407ecf5"
        );
        let mut kwargs = args.clone();
        kwargs.insert("model".into(), model("fact_trips").into());
        assert_eq!(
            generic_test_hash(&names.full, "relationships", None, &kwargs),
            "d38a6950a7"
        );
    }

    #[test]
    fn booleans_jinja_and_lists_in_test_arguments_name_and_hash_like_dbt_core() {
        let args = map(serde_json::json!({
            "values": "{{ var('payment_type_values') }}", "quote": false, "column_name": "payment_type"
        }));
        let names = generic_test_names("accepted_values", "stg_green_tripdata", &args);
        assert_eq!(
            names.full,
            "accepted_values_stg_green_tripdata_payment_type__False___var_payment_type_values_"
        );
        assert_eq!(
            names.short,
            "accepted_values_stg_green_trip_bb7a282b56041793ff3eb94c0ccbe976"
        );
        let mut kwargs = args.clone();
        kwargs.insert("model".into(), model("stg_green_tripdata").into());
        assert_eq!(
            generic_test_hash(&names.full, "accepted_values", None, &kwargs),
            "477ede69f0"
        );

        let args =
            map(serde_json::json!({"values": ["Green", "Yellow"], "column_name": "service_type"}));
        let names = generic_test_names("accepted_values", "fact_trips", &args);
        assert_eq!(
            names.full,
            "accepted_values_fact_trips_service_type__Green__Yellow"
        );
        let mut kwargs = args.clone();
        kwargs.insert("model".into(), model("fact_trips").into());
        assert_eq!(
            generic_test_hash(&names.full, "accepted_values", None, &kwargs),
            "f41b043628"
        );
    }

    #[test]
    fn namespaced_tests_name_and_hash_like_dbt_core() {
        let args =
            map(serde_json::json!({"expression": ">= 1", "column_name": "total_monthly_trips"}));
        let names = generic_test_names(
            "dbt_utils_expression_is_true",
            "dm_monthly_zone_revenue",
            &args,
        );
        assert_eq!(
            names.full,
            "dbt_utils_expression_is_true_dm_monthly_zone_revenue_total_monthly_trips___1"
        );
        assert_eq!(
            names.short,
            "dbt_utils_expression_is_true_d_2ae679a635bc5b27bdb4653633a74bb5"
        );
        let mut kwargs = args.clone();
        kwargs.insert("model".into(), model("dm_monthly_zone_revenue").into());
        assert_eq!(
            generic_test_hash(
                &names.full,
                "expression_is_true",
                Some("dbt_utils"),
                &kwargs
            ),
            "bc9ec17909"
        );
    }

    #[test]
    fn python_reprs_of_strings_pick_quotes_like_python() {
        assert_eq!(python_str_repr("a"), "'a'");
        assert_eq!(python_str_repr("ref('x')"), "\"ref('x')\"");
        assert_eq!(python_str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(
            python_repr(&serde_json::json!([1, 2.0, null])),
            "[1, 2.0, None]"
        );
    }
}
