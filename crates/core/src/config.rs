//! Project configuration: `tripline.toml` in the project directory, every key overridable by an environment
//! variable `TRIPLINE_<SECTION>_<KEY>` (e.g. `TRIPLINE_LAKE_ROOT=s3://bucket/lake`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::time::YearMonth;

/// The name of the project file.
pub const CONFIG_FILE: &str = "tripline.toml";

/// The whole project configuration, with defaults for every key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the data lake lives.
    pub lake: LakeConfig,
    /// The PostgreSQL server used when a command targets `postgres` without a URL.
    pub postgres: PostgresConfig,
    /// How loads behave.
    pub ingest: IngestConfig,
    /// What `tripline run` does.
    pub pipeline: PipelineConfig,
    /// Where flow runs are recorded.
    pub flow: FlowConfig,
}

/// `[flow]`: the orchestrator's state store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// `postgres://user@host/db` to share runs between workers, or `sqlite:<path>`; default: SQLite in
    /// `<project>/.tripline/state.db`. Like `[postgres] url`, a password belongs only in `TRIPLINE_FLOW_STATE_URL`.
    pub state_url: Option<String>,
}

/// `[lake]`: the lake root.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// An object store URL (`file://`, `s3://`, `gs://`) or a path, relative to the project directory.
    pub root: String,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            root: "lake".into(),
        }
    }
}

/// `[postgres]`: connection settings. The password belongs in the URL only through the environment
/// (`TRIPLINE_POSTGRES_URL`) or `PGPASSWORD`, never in the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/db`.
    pub url: Option<String>,
}

/// `[ingest]`: load behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Directory for quarantine files, relative to the project directory.
    pub quarantine_dir: String,
    /// Rows per Arrow batch.
    pub batch_rows: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            quarantine_dir: "quarantine".into(),
            batch_rows: 65_536,
        }
    }
}

/// `[pipeline]`: the job `tripline run` performs on the embedded default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// The month to generate and load.
    pub month: YearMonth,
    /// Synthetic yellow trips to generate.
    pub yellow_rows: u64,
    /// Synthetic green trips to generate.
    pub green_rows: u64,
    /// The zone lookup CSV, relative to the project directory.
    pub zones: String,
    /// Seed of the generator, so every run of the pipeline sees the same data.
    pub seed: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            month: YearMonth {
                year: 2024,
                month: 1,
            },
            yellow_rows: 300_000,
            green_rows: 60_000,
            zones: "seeds/taxi_zone_lookup.csv".into(),
            seed: 42,
        }
    }
}

/// A configuration problem, naming the file or variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an override is not valid.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file path or the environment variable.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

impl crate::Classify for ConfigError {
    fn domain(&self) -> crate::ErrorDomain {
        crate::ErrorDomain::User
    }
}

impl Config {
    /// Read `tripline.toml` from `project_dir` (defaults when absent) and apply `TRIPLINE_*` overrides from `env`.
    pub fn load(
        project_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let path = project_dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let origin = path.display().to_string();
        // The file alone first, so its errors point at the line and key.
        toml::from_str::<Config>(&text).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let file_table: toml::Table = toml::from_str(&text).expect("parsed above");
        let overrides: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("TRIPLINE_"))
            .collect();
        let mut table = file_table.clone();
        for (var, value) in &overrides {
            apply_override(&mut table, var, value)?;
            // Check each override on its own so the error names the variable that is wrong.
            let mut alone = file_table.clone();
            apply_override(&mut alone, var, value)?;
            if let Err(e) = toml::Value::Table(alone).try_into::<Config>() {
                return Err(ConfigError::Invalid {
                    origin: format!("{var}={value}"),
                    message: e.message().to_string(),
                });
            }
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: format!("{origin} with TRIPLINE_* overrides"),
                    message: e.message().to_string(),
                })?;
        Ok(config)
    }
}

/// The sections and keys an environment variable may name; anything else under `TRIPLINE_` that looks like a
/// config key is refused rather than silently ignored.
const KEYS: &[(&str, &[&str])] = &[
    ("lake", &["root"]),
    ("postgres", &["url"]),
    ("ingest", &["quarantine_dir", "batch_rows"]),
    (
        "pipeline",
        &["month", "yellow_rows", "green_rows", "zones", "seed"],
    ),
    ("flow", &["state_url"]),
];

fn apply_override(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let rest = var["TRIPLINE_".len()..].to_ascii_lowercase();
    let Some((section, key)) = KEYS.iter().find_map(|(section, keys)| {
        let key = rest.strip_prefix(section)?.strip_prefix('_')?;
        keys.contains(&key).then_some((*section, key))
    }) else {
        // Variables of other tools that share the prefix (TRIPLINE_TEST_*, TRIPLINE_LOG) are not config keys.
        return Ok(());
    };
    // A value that parses as a TOML scalar (number, bool) keeps its type; anything else is a string.
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table() && !v.is_array())
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let entry = table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(section_table) = entry else {
        return Err(ConfigError::Invalid {
            origin: var.into(),
            message: format!("[{section}] is not a table"),
        });
    };
    section_table.insert(key.to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(dir.path(), env(&[])).unwrap();
        assert_eq!(c.lake.root, "lake");
        assert_eq!(c.ingest.batch_rows, 65_536);
    }

    #[test]
    fn environment_overrides_the_file_and_keeps_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[lake]\nroot = \"file:///data/lake\"\n[ingest]\nbatch_rows = 10\n",
        )
        .unwrap();
        let c = Config::load(
            dir.path(),
            env(&[
                ("TRIPLINE_LAKE_ROOT", "s3://b/lake"),
                ("TRIPLINE_INGEST_BATCH_ROWS", "500"),
                ("TRIPLINE_TEST_X", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.lake.root, "s3://b/lake");
        assert_eq!(c.ingest.batch_rows, 500);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "[lake]\nrooot = \"x\"\n").unwrap();
        let e = Config::load(dir.path(), env(&[])).unwrap_err().to_string();
        assert!(e.contains("tripline.toml") && e.contains("rooot"), "{e}");

        std::fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
        let e = Config::load(dir.path(), env(&[("TRIPLINE_PIPELINE_MONTH", "2021-13")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("TRIPLINE_") && e.contains("2021-13"), "{e}");
    }
}
