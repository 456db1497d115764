//! The course-style NYC taxi project in tests/fixtures/nyc_taxi: it parses from its own profiles.yml, selects
//! as dbt does, compiles for both adapter types, and writes a manifest dbt consumers can read.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tripline_dbt::{
    CompileOptions, DbtProject, IndirectSelection, LoadOptions, OfflineAdapter, ResourceType,
};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nyc_taxi");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nyc_taxi");
    copy_dir(&src, &root);
    (dir, root)
}

fn load(root: &Path, target: Option<&str>) -> DbtProject {
    DbtProject::load(&LoadOptions {
        project_dir: root.to_path_buf(),
        profiles_dir: Some(root.to_path_buf()),
        target_name: target.map(String::from),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn names(project: &DbtProject, ids: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<String> {
    ids.into_iter()
        .map(|id| {
            let id = id.as_ref();
            project
                .manifest
                .nodes
                .get(id)
                .map(|n| n.name.clone())
                .or_else(|| {
                    project
                        .manifest
                        .sources
                        .get(id)
                        .map(|s| format!("{}.{}", s.source_name, s.name))
                })
                .unwrap()
        })
        .collect()
}

#[test]
fn parses_nodes_configs_and_sources() {
    let (_dir, root) = fixture();
    let project = load(&root, None);
    assert_eq!(project.target.adapter_type, "tripline");
    assert_eq!(project.target.schema, "trips_data_all");
    let m = &project.manifest;
    let fact = &m.nodes["model.nyc_taxi.fact_trips"];
    assert_eq!(fact.config.materialized, "incremental");
    assert_eq!(fact.config.unique_key_columns(), vec!["tripid"]);
    assert_eq!(fact.config.incremental_strategy.as_deref(), Some("merge"));
    assert_eq!(fact.fqn, vec!["nyc_taxi", "core", "fact_trips"]);
    assert_eq!(fact.relation.schema, "trips_data_all");
    assert_eq!(
        fact.depends_on.nodes,
        vec![
            "model.nyc_taxi.stg_green_tripdata",
            "model.nyc_taxi.stg_yellow_tripdata",
            "model.nyc_taxi.dim_zones"
        ]
    );
    let stg = &m.nodes["model.nyc_taxi.stg_yellow_tripdata"];
    assert_eq!(stg.config.materialized, "view");
    assert_eq!(stg.tags, vec!["staging"]);
    assert!(
        stg.depends_on
            .macros
            .contains(&"macro.dbt_utils.generate_surrogate_key".to_string())
    );
    assert!(
        stg.depends_on
            .macros
            .contains(&"macro.nyc_taxi.get_payment_type_description".to_string())
    );
    let mart = &m.nodes["model.nyc_taxi.dm_monthly_zone_revenue"];
    assert_eq!(mart.tags, vec!["core", "mart"]);
    let seed = &m.nodes["seed.nyc_taxi.taxi_zone_lookup"];
    assert_eq!(seed.resource_type, ResourceType::Seed);
    assert_eq!(seed.config.column_types["locationid"], "integer");
    let green = &m.sources["source.nyc_taxi.staging.green_tripdata"];
    assert_eq!(green.relation.schema, "trips_data_all");
    assert_eq!(
        green.loaded_at_field.as_deref(),
        Some("cast(lpep_pickup_datetime as timestamp)")
    );
    assert_eq!(green.freshness.as_ref().unwrap()["warn_after"]["count"], 12);
    let tests: Vec<_> = m
        .nodes
        .values()
        .filter(|n| n.resource_type == ResourceType::Test)
        .collect();
    assert_eq!(
        tests.len(),
        15,
        "{:?}",
        tests.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let unique_warn = tests
        .iter()
        .find(|t| t.name == "unique_stg_yellow_tripdata_tripid")
        .unwrap();
    assert_eq!(unique_warn.config.severity, "warn");
    assert_eq!(
        unique_warn.attached_node.as_deref(),
        Some("model.nyc_taxi.stg_yellow_tripdata")
    );
    let rel = tests
        .iter()
        .find(|t| t.name.starts_with("relationships_stg_yellow"))
        .unwrap();
    assert!(
        rel.depends_on
            .nodes
            .contains(&"seed.nyc_taxi.taxi_zone_lookup".to_string())
    );
    let macro_info = &m.macros["macro.nyc_taxi.get_payment_type_description"];
    assert_eq!(
        macro_info.description,
        "Maps a payment type code to its description."
    );
}

#[test]
fn selects_like_dbt() {
    let (_dir, root) = fixture();
    let project = load(&root, None);
    let no_tests = |sel: &str| {
        let s = project
            .select(&[sel.to_string()], &[], IndirectSelection::Empty)
            .unwrap();
        let ids = s.selected.iter().filter(|id| !id.starts_with("test."));
        let mut n = names(&project, ids);
        n.sort();
        n
    };
    assert_eq!(
        no_tests("+fact_trips"),
        vec![
            "dim_zones",
            "fact_trips",
            "staging.green_tripdata",
            "staging.yellow_tripdata",
            "stg_green_tripdata",
            "stg_yellow_tripdata",
            "taxi_zone_lookup"
        ]
    );
    assert_eq!(
        no_tests("tag:staging"),
        vec!["stg_green_tripdata", "stg_yellow_tripdata"]
    );
    assert_eq!(
        no_tests("path:models/staging"),
        vec![
            "staging.green_tripdata",
            "staging.yellow_tripdata",
            "stg_green_tripdata",
            "stg_yellow_tripdata"
        ]
    );
    assert_eq!(
        no_tests("source:staging.yellow_tripdata+,resource_type:model"),
        vec![
            "dm_monthly_zone_revenue",
            "fact_trips",
            "stg_yellow_tripdata"
        ]
    );
    assert_eq!(
        no_tests("config.materialized:incremental"),
        vec!["fact_trips"]
    );
    assert_eq!(
        no_tests("fact_trips+1"),
        vec!["dm_monthly_zone_revenue", "fact_trips"]
    );

    // Space = union, --exclude removes; eager indirect selection adds the tests of selected models.
    let s = project
        .select(
            &["stg_yellow_tripdata dim_zones".into()],
            &["dim_zones".into()],
            IndirectSelection::Eager,
        )
        .unwrap();
    let selected = names(&project, &s.selected);
    assert!(selected.contains(&"stg_yellow_tripdata".to_string()));
    assert!(!selected.contains(&"dim_zones".to_string()));
    assert!(selected.contains(&"unique_stg_yellow_tripdata_tripid".to_string()));

    // Levels: parents strictly before children; everything selected appears once.
    let all = project.select(&[], &[], IndirectSelection::Eager).unwrap();
    let order: Vec<&String> = all.in_order().collect();
    let pos = |name: &str| {
        order
            .iter()
            .position(|id| id.ends_with(&format!(".{name}")))
            .unwrap()
    };
    assert!(pos("taxi_zone_lookup") < pos("dim_zones"));
    assert!(pos("dim_zones") < pos("fact_trips"));
    assert!(pos("fact_trips") < pos("dm_monthly_zone_revenue"));
    assert_eq!(order.len(), project.manifest.nodes.len());
    assert_eq!(
        all.levels[0]
            .iter()
            .filter(|id| id.starts_with("model."))
            .count(),
        2,
        "{:?}",
        all.levels[0]
    );

    let err = project
        .select(&["bogus:x".into()], &[], IndirectSelection::Eager)
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown selection method `bogus`"),
        "{err}"
    );
}

#[test]
fn compiles_for_both_adapters_and_writes_artifacts() {
    let (_dir, root) = fixture();
    for (target, expect_relation, expect_concat) in [
        (
            None,
            "from trips_data_all.stg_green_tripdata",
            "concat(coalesce(",
        ),
        (
            Some("pg"),
            "from \"ny_taxi\".\"dbt_prod\".\"stg_green_tripdata\"",
            "coalesce(cast(vendorid as varchar), '_dbt_utils_surrogate_key_null_') || '-'",
        ),
    ] {
        let mut project = load(&root, target);
        let options = CompileOptions {
            adapter: Arc::new(OfflineAdapter::new(
                project.target.adapter_type.clone(),
                project.target.database.clone(),
            )),
            execute: false,
            full_refresh: false,
        };
        let ids: Vec<String> = project.manifest.nodes.keys().cloned().collect();
        let compiled = project
            .compile_all(&ids, &options)
            .unwrap_or_else(|e| panic!("{e}"));
        let fact = compiled
            .iter()
            .find(|c| c.unique_id == "model.nyc_taxi.fact_trips")
            .unwrap();
        assert!(
            common::normalize(&fact.compiled_code).contains(expect_relation),
            "{}",
            fact.compiled_code
        );
        assert!(
            !fact.compiled_code.contains("max(pickup_datetime)"),
            "not incremental offline"
        );
        let stg = compiled
            .iter()
            .find(|c| c.unique_id == "model.nyc_taxi.stg_yellow_tripdata")
            .unwrap();
        assert!(
            stg.compiled_code.contains(expect_concat),
            "{}",
            stg.compiled_code
        );
        assert!(stg.compiled_code.contains("when 1 then 'Credit card'"));
        assert!(
            !stg.compiled_code.contains("limit 100"),
            "is_test_run is false in dbt_project.yml"
        );
        let find_test = |test: &str, column: &str| {
            compiled
                .iter()
                .find(|c| {
                    let n = &project.manifest.nodes[&c.unique_id];
                    n.test_metadata.as_ref().is_some_and(|t| t.name == test)
                        && n.column_name.as_deref() == Some(column)
                })
                .unwrap_or_else(|| panic!("no {test} test on {column}"))
        };
        let accepted = find_test("accepted_values", "payment_type");
        assert!(
            common::normalize(&accepted.compiled_code).contains("not in (1, 2, 3, 4, 5, 6)"),
            "{}",
            accepted.compiled_code
        );
        let range = find_test("accepted_range", "total_amount");
        assert!(
            range
                .compiled_code
                .contains("where payment_type_description != 'Voided trip') dbt_subquery"),
            "{}",
            range.compiled_code
        );

        for c in &compiled {
            project.write_compiled(c).unwrap();
        }
        let manifest_path = project.manifest.write(&project.target_dir()).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(manifest_path).unwrap()).unwrap();
        assert_eq!(
            manifest["metadata"]["dbt_schema_version"],
            "https://schemas.getdbt.com/dbt/manifest/v12.json"
        );
        assert_eq!(manifest["metadata"]["project_name"], "nyc_taxi");
        let node = &manifest["nodes"]["model.nyc_taxi.fact_trips"];
        assert_eq!(node["resource_type"], "model");
        assert_eq!(node["original_file_path"], "models/core/fact_trips.sql");
        assert_eq!(node["path"], "core/fact_trips.sql");
        assert_eq!(node["config"]["materialized"], "incremental");
        assert_eq!(node["refs"][0]["name"], "stg_green_tripdata");
        assert!(
            node["compiled_code"]
                .as_str()
                .unwrap()
                .contains("inner join")
        );
        assert!(
            node["raw_code"]
                .as_str()
                .unwrap()
                .contains("is_incremental()")
        );
        assert_eq!(
            manifest["child_map"]["model.nyc_taxi.fact_trips"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        assert!(
            manifest["sources"]["source.nyc_taxi.staging.yellow_tripdata"]["loaded_at_field"]
                .is_string()
        );
        assert!(manifest["macros"]["macro.dbt_utils.generate_surrogate_key"].is_object());
        assert!(
            root.join("target/compiled/nyc_taxi/models/core/fact_trips.sql")
                .is_file()
        );
    }
}
