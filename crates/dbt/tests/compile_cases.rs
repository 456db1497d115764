//! Data-driven compile tests: each `tests/compile/*.toml` is a tiny dbt project (files inline), the vars and
//! target it runs with, and the compiled SQL expected for some nodes — or the error fragments expected.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use tripline_dbt::{CompileOptions, DbtProject, LoadOptions, OfflineAdapter, Target, parse_vars};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows.
    description: String,
    /// `tripline` (default) or `postgres`.
    #[serde(default = "default_adapter")]
    adapter: String,
    /// Read profiles.yml from the project instead of building the target in code.
    #[serde(default)]
    use_profiles: bool,
    /// `--target` when using profiles.yml.
    #[serde(default)]
    target_name: Option<String>,
    /// `--vars` YAML.
    #[serde(default)]
    vars: Option<String>,
    /// dbt's execute flag at compile.
    #[serde(default)]
    execute: bool,
    #[serde(default)]
    full_refresh: bool,
    /// Compile with the offline adapter (no database connection).
    #[serde(default)]
    offline: bool,
    /// Relations that exist in the fake database (`schema.identifier`).
    #[serde(default)]
    existing: Vec<String>,
    /// Columns of relations in the fake database.
    #[serde(default)]
    columns: BTreeMap<String, Vec<String>>,
    /// Rows `run_query` returns (one value per row).
    #[serde(default)]
    query_rows: Vec<serde_json::Value>,
    files: BTreeMap<String, String>,
    /// Node name -> expected compiled SQL (whitespace-normalised).
    #[serde(default)]
    expected: BTreeMap<String, String>,
    /// Fragments the error message must contain.
    #[serde(default)]
    error: Vec<String>,
}

fn default_adapter() -> String {
    "tripline".into()
}

fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("bad case file: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut files = case.files.clone();
    files
        .entry("dbt_project.yml".into())
        .or_insert_with(|| "name: proj\nprofile: proj\n".into());
    common::write_files(dir.path(), &files);
    let database = (case.adapter == "postgres").then(|| "warehouse".to_string());
    let mut options = LoadOptions {
        project_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    if case.use_profiles {
        options.profiles_dir = Some(dir.path().to_path_buf());
        options.target_name = case.target_name.clone();
    } else {
        options.target = Some(Target::new(&case.adapter, "analytics", database.as_deref()));
    }
    if let Some(vars) = &case.vars {
        options.vars = parse_vars(vars).map_err(|e| e.to_string())?;
    }
    let outcome = (|| -> Result<BTreeMap<String, String>, tripline_dbt::DbtError> {
        let project = DbtProject::load(&options)?;
        let adapter = common::MapAdapter {
            adapter_type: project.target.adapter_type.clone(),
            database: project.target.database.clone(),
            existing: case
                .existing
                .iter()
                .map(|s| s.to_lowercase())
                .collect::<BTreeSet<_>>(),
            columns: case
                .columns
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.clone()))
                .collect(),
            query_rows: case.query_rows.iter().map(|v| vec![v.clone()]).collect(),
        };
        let adapter: Arc<dyn tripline_dbt::Adapter> = if case.offline {
            Arc::new(OfflineAdapter::new(
                project.target.adapter_type.clone(),
                project.target.database.clone(),
            ))
        } else {
            Arc::new(adapter)
        };
        let compile = CompileOptions {
            adapter,
            execute: case.execute,
            full_refresh: case.full_refresh,
        };
        let mut out = BTreeMap::new();
        let names: Vec<String> = if case.expected.is_empty() {
            project.manifest.nodes.keys().cloned().collect()
        } else {
            case.expected.keys().cloned().collect()
        };
        for name in names {
            let Some(id) = project
                .manifest
                .nodes
                .values()
                .find(|n| n.name == name || n.unique_id == name)
                .map(|n| n.unique_id.clone())
            else {
                let names: Vec<&str> = project
                    .manifest
                    .nodes
                    .values()
                    .map(|n| n.name.as_str())
                    .collect();
                out.insert(name, format!("<no such node; nodes: {names:?}>"));
                continue;
            };
            let compiled = project.compile_node(&id, &compile)?;
            out.insert(name, compiled.compiled_code);
        }
        Ok(out)
    })();
    match (outcome, case.error.is_empty()) {
        (Ok(compiled), true) => {
            for (name, want) in &case.expected {
                let got = &compiled[name];
                if common::normalize(got) != common::normalize(want) {
                    return Err(format!(
                        "{}: node `{name}` compiled to\n{got}\n--- expected ---\n{want}",
                        case.description
                    ));
                }
            }
            Ok(())
        }
        (Ok(_), false) => Err(format!(
            "{}: expected an error containing {:?}, got success",
            case.description, case.error
        )),
        (Err(e), true) => Err(format!("{}: unexpected error: {e}", case.description)),
        (Err(e), false) => {
            let msg = e.to_string();
            let missing: Vec<&String> = case
                .error
                .iter()
                .filter(|f| !msg.contains(f.as_str()))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{}: error\n{msg}\ndoes not contain {missing:?}",
                    case.description
                ))
            }
        }
    }
}

#[test]
fn compile_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compile");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no cases in {}", dir.display());
    let mut failures = Vec::new();
    for path in &paths {
        if let Err(e) = run_case(path) {
            failures.push(format!(
                "{}:\n{e}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    println!("{} compile cases, {} failed", paths.len(), failures.len());
    assert!(failures.is_empty(), "\n\n{}", failures.join("\n\n"));
}
