//! `profiles.yml`: the connection targets of a profile, with `env_var()` rendered as dbt does.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::adapter::{POSTGRES, TRIPLINE};
use crate::config::ConfigMap;
use crate::error::{DbtError, Result};
use crate::yaml::read_yaml;

/// A resolved target of a profile: the adapter type and its settings, every string Jinja-rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The profile the target belongs to.
    pub profile_name: String,
    /// The target name (`dev`, `prod`).
    pub name: String,
    /// `tripline` (the embedded warehouse) or `postgres`.
    pub adapter_type: String,
    /// The schema models build into (a dataset in the embedded warehouse).
    pub schema: String,
    /// The database (PostgreSQL dbname); `None` for the embedded warehouse.
    pub database: Option<String>,
    /// Parallel node executions.
    pub threads: usize,
    /// Every key of the target as written (rendered), password included.
    pub settings: ConfigMap,
}

/// The connection settings of a `type: postgres` target (dbt-postgres keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    /// Server host.
    pub host: String,
    /// User name.
    pub user: String,
    /// Password, if given.
    pub password: Option<String>,
    /// Server port (5432).
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// Schema models build into.
    pub schema: String,
    /// `sslmode`, if given.
    pub sslmode: Option<String>,
}

impl Target {
    /// A target built in code (tests, or a caller that knows its warehouse without profiles.yml).
    pub fn new(adapter_type: &str, schema: &str, database: Option<&str>) -> Self {
        let mut settings = ConfigMap::new();
        settings.insert("type".into(), adapter_type.into());
        settings.insert("schema".into(), schema.into());
        if let Some(db) = database {
            settings.insert("dbname".into(), db.into());
        }
        Self {
            profile_name: "default".into(),
            name: "dev".into(),
            adapter_type: adapter_type.into(),
            schema: schema.into(),
            database: database.map(String::from),
            threads: 1,
            settings,
        }
    }

    /// The PostgreSQL connection settings; an error when the target is not `type: postgres` or lacks a key.
    pub fn postgres(&self) -> Result<PostgresTarget> {
        if self.adapter_type != POSTGRES {
            return Err(DbtError::Config(format!(
                "target `{}` is of type `{}`, not postgres",
                self.name, self.adapter_type
            )));
        }
        let get = |key: &str| -> Option<String> {
            self.settings.get(key).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let need = |key: &str| {
            get(key).ok_or_else(|| {
                DbtError::Config(format!(
                    "profiles.yml: target `{}` of profile `{}` has no `{key}` (type postgres needs host, user, \
                     port, dbname, schema)",
                    self.name, self.profile_name
                ))
            })
        };
        let port = match get("port") {
            Some(p) => p.parse().map_err(|_| {
                DbtError::Config(format!(
                    "profiles.yml: target `{}`: port `{p}` is not a number",
                    self.name
                ))
            })?,
            None => 5432,
        };
        Ok(PostgresTarget {
            host: need("host")?,
            user: need("user")?,
            password: get("password").or_else(|| get("pass")),
            port,
            dbname: get("dbname")
                .or_else(|| get("database"))
                .map_or_else(|| need("dbname"), Ok)?,
            schema: need("schema")?,
            sslmode: get("sslmode"),
        })
    }

    /// The `target` variable of the Jinja context: every setting but the password, plus name/type/threads.
    pub fn jinja_map(&self) -> ConfigMap {
        let mut map = self.settings.clone();
        map.remove("password");
        map.remove("pass");
        map.insert("name".into(), self.name.clone().into());
        map.insert("target_name".into(), self.name.clone().into());
        map.insert("profile_name".into(), self.profile_name.clone().into());
        map.insert("type".into(), self.adapter_type.clone().into());
        map.insert("schema".into(), self.schema.clone().into());
        map.insert(
            "database".into(),
            self.database
                .clone()
                .map_or(serde_json::Value::Null, Into::into),
        );
        map.insert("threads".into(), self.threads.into());
        map
    }
}

/// Where profiles.yml is looked for: the explicit directory, `DBT_PROFILES_DIR`, the project directory if it
/// has one, then `~/.dbt`.
pub fn profiles_dir(explicit: Option<&Path>, project_dir: &Path) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Ok(dir) = std::env::var("DBT_PROFILES_DIR") {
        return PathBuf::from(dir);
    }
    if project_dir.join("profiles.yml").is_file() {
        return project_dir.to_path_buf();
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".dbt"))
        .unwrap_or_else(|| project_dir.to_path_buf())
}

#[derive(Debug, Deserialize)]
struct ProfileEntry {
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    outputs: std::collections::BTreeMap<String, ConfigMap>,
}

/// Read profile `profile` from `<dir>/profiles.yml` and resolve `target` (or the profile's default target).
pub fn load_target(dir: &Path, profile: &str, target: Option<&str>) -> Result<Target> {
    let path = dir.join("profiles.yml");
    if !path.is_file() {
        return Err(DbtError::Config(format!(
            "no profiles.yml in {} (set --profiles-dir, or DBT_PROFILES_DIR)",
            dir.display()
        )));
    }
    let display = path.display().to_string();
    let all: serde_json::Map<String, serde_json::Value> = read_yaml(&path, &display)?;
    let raw = all.get(profile).ok_or_else(|| {
        let names: Vec<&str> = all
            .keys()
            .filter(|k| *k != "config")
            .map(String::as_str)
            .collect();
        DbtError::Config(format!(
            "profile `{profile}` not found in {display} (profiles there: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))
    })?;
    let entry: ProfileEntry = serde_json::from_value(raw.clone())
        .map_err(|e| DbtError::Config(format!("{display}: profile `{profile}`: {e}")))?;
    let target_name = match target {
        Some(t) => t.to_string(),
        None => match &entry.target {
            Some(t) => render_string(t, &display)?,
            None => "default".to_string(),
        },
    };
    let output = entry.outputs.get(&target_name).ok_or_else(|| {
        DbtError::Config(format!(
            "target `{target_name}` not found in profile `{profile}` of {display} (targets: {})",
            entry.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let mut settings = ConfigMap::new();
    for (k, v) in output {
        settings.insert(k.clone(), render_value(v, &display)?);
    }
    let adapter_type = settings
        .get("type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            DbtError::Config(format!(
                "{display}: target `{target_name}` of profile `{profile}` has no `type`"
            ))
        })?
        .to_string();
    if adapter_type != TRIPLINE && adapter_type != POSTGRES {
        return Err(DbtError::NotSupported(format!(
            "adapter type `{adapter_type}` (target `{target_name}`); tripline runs `tripline` (embedded) and \
             `postgres`"
        )));
    }
    let text = |key: &str| -> Option<String> {
        settings.get(key).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let schema = text("schema").or_else(|| text("dataset")).ok_or_else(|| {
        DbtError::Config(format!(
            "{display}: target `{target_name}` of profile `{profile}` has no `schema`"
        ))
    })?;
    let database = if adapter_type == POSTGRES {
        text("dbname").or_else(|| text("database"))
    } else {
        text("database")
    };
    let threads = match text("threads") {
        Some(t) => t.parse().map_err(|_| {
            DbtError::Config(format!(
                "{display}: target `{target_name}`: threads `{t}` is not a number"
            ))
        })?,
        None => 1,
    };
    Ok(Target {
        profile_name: profile.to_string(),
        name: target_name,
        adapter_type,
        schema,
        database,
        threads,
        settings,
    })
}

fn render_value(v: &serde_json::Value, file: &str) -> Result<serde_json::Value> {
    Ok(match v {
        serde_json::Value::String(s) if s.contains("{{") || s.contains("{%") => {
            serde_json::Value::String(render_string(s, file)?)
        }
        other => other.clone(),
    })
}

/// Render a profile string with `env_var()` available.
fn render_string(text: &str, file: &str) -> Result<String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_string());
    }
    let mut env = minijinja::Environment::new();
    env.add_function("env_var", crate::jinja::functions::env_var);
    for f in ["as_number", "as_text", "as_bool", "as_native"] {
        env.add_filter(f, |v: minijinja::Value| v);
    }
    env.render_str(text, minijinja::context! {})
        .map(|s| s.trim().to_string())
        .map_err(|e| DbtError::Config(format!("{file}: {}", crate::jinja::describe_error(&e))))
}
