//! `dbt_project.yml`, `packages.yml` and the packages a project uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ConfigMap;
use crate::error::{DbtError, Result};
use crate::yaml::read_yaml;

/// The dbt version this crate is compatible with, checked against `require-dbt-version`.
pub const DBT_COMPATIBLE_VERSION: (u64, u64, u64) = (1, 10, 0);

/// A string or a list of strings, as dbt accepts for paths, hooks and version requirements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// Nothing given.
    #[default]
    None,
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// One entry of the `dispatch:` list: where `adapter.dispatch(..., macro_namespace)` searches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchConfig {
    /// The namespace the rule is for (`dbt_utils`, `dbt`).
    pub macro_namespace: String,
    /// Package names, searched in order.
    pub search_order: Vec<String>,
}

/// The contents of `dbt_project.yml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProjectFile {
    /// The project (package) name: the first part of every fqn and unique id.
    pub name: String,
    /// The project's version.
    #[serde(default)]
    pub version: Option<serde_json::Value>,
    /// `config-version` (2).
    #[serde(default)]
    pub config_version: Option<u32>,
    /// The profile in profiles.yml this project connects with.
    #[serde(default)]
    pub profile: Option<String>,
    /// Directories of models.
    #[serde(default = "default_model_paths")]
    pub model_paths: Vec<String>,
    /// Directories of seeds.
    #[serde(default = "default_seed_paths")]
    pub seed_paths: Vec<String>,
    /// Directories of singular tests and generic test definitions.
    #[serde(default = "default_test_paths")]
    pub test_paths: Vec<String>,
    /// Directories of macros.
    #[serde(default = "default_macro_paths")]
    pub macro_paths: Vec<String>,
    /// Directories of snapshots.
    #[serde(default = "default_snapshot_paths")]
    pub snapshot_paths: Vec<String>,
    /// Directories of analyses (compiled, never run).
    #[serde(default = "default_analysis_paths")]
    pub analysis_paths: Vec<String>,
    /// Directories of docs blocks.
    #[serde(default)]
    pub docs_paths: Vec<String>,
    /// Where artifacts go (`target`).
    #[serde(default = "default_target_path")]
    pub target_path: String,
    /// Where `dbt deps` installs packages (`dbt_packages`).
    #[serde(default = "default_packages_path")]
    pub packages_install_path: String,
    /// What `dbt clean` deletes.
    #[serde(default)]
    pub clean_targets: Vec<String>,
    /// Project variables: global keys, or per-package mappings under a package name.
    #[serde(default)]
    pub vars: ConfigMap,
    /// Folder-level model configs (`models: <project>: <folder>: +materialized: view`).
    #[serde(default)]
    pub models: ConfigMap,
    /// Folder-level seed configs.
    #[serde(default)]
    pub seeds: ConfigMap,
    /// Folder-level snapshot configs.
    #[serde(default)]
    pub snapshots: ConfigMap,
    /// Folder-level test configs (`tests:` or `data_tests:`).
    #[serde(default, alias = "data_tests")]
    pub tests: ConfigMap,
    /// Source configs.
    #[serde(default)]
    pub sources: ConfigMap,
    /// `require-dbt-version`: a range or a list of ranges.
    #[serde(default)]
    pub require_dbt_version: OneOrMany,
    /// Behaviour flags.
    #[serde(default)]
    pub flags: ConfigMap,
    /// Search orders for `adapter.dispatch`.
    #[serde(default)]
    pub dispatch: Vec<DispatchConfig>,
    /// SQL run before the first node.
    #[serde(default)]
    pub on_run_start: OneOrMany,
    /// SQL run after the last node.
    #[serde(default)]
    pub on_run_end: OneOrMany,
    /// Quoting config.
    #[serde(default)]
    pub quoting: ConfigMap,
    /// Keys this crate does not read, kept for consumers.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

fn default_model_paths() -> Vec<String> {
    vec!["models".into()]
}
fn default_seed_paths() -> Vec<String> {
    vec!["seeds".into()]
}
fn default_test_paths() -> Vec<String> {
    vec!["tests".into()]
}
fn default_macro_paths() -> Vec<String> {
    vec!["macros".into()]
}
fn default_snapshot_paths() -> Vec<String> {
    vec!["snapshots".into()]
}
fn default_analysis_paths() -> Vec<String> {
    vec!["analyses".into()]
}
fn default_target_path() -> String {
    "target".into()
}
fn default_packages_path() -> String {
    "dbt_packages".into()
}

impl ProjectFile {
    /// Read `dbt_project.yml` from a project directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("dbt_project.yml");
        if !path.is_file() {
            return Err(DbtError::Config(format!(
                "no dbt_project.yml in {} (is --project-dir right?)",
                dir.display()
            )));
        }
        let file: Self = read_yaml(&path, "dbt_project.yml")?;
        if file.name.trim().is_empty() {
            return Err(DbtError::Config("dbt_project.yml: `name` is empty".into()));
        }
        file.check_version()?;
        Ok(file)
    }

    /// Check `require-dbt-version` against [`DBT_COMPATIBLE_VERSION`].
    pub fn check_version(&self) -> Result<()> {
        for req in self.require_dbt_version.to_vec() {
            for part in req.split(',') {
                if !version_matches(part.trim(), DBT_COMPATIBLE_VERSION)? {
                    let (a, b, c) = DBT_COMPATIBLE_VERSION;
                    return Err(DbtError::Config(format!(
                        "dbt_project.yml: require-dbt-version `{req}` excludes the dbt version tripline is \
                         compatible with ({a}.{b}.{c})"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn version_matches(req: &str, have: (u64, u64, u64)) -> Result<bool> {
    if req.is_empty() {
        return Ok(true);
    }
    let op_len = req.find(|c: char| c.is_ascii_digit()).unwrap_or(req.len());
    let (op, ver) = req.split_at(op_len);
    let mut parts = ver.trim().split('.').map(|p| p.trim().parse::<u64>());
    let mut next = || parts.next().unwrap_or(Ok(0));
    let want = match (next(), next(), next()) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            return Err(DbtError::Config(format!(
                "dbt_project.yml: cannot read the version requirement `{req}`"
            )));
        }
    };
    Ok(match op.trim() {
        ">=" => have >= want,
        ">" => have > want,
        "<=" => have <= want,
        "<" => have < want,
        "" | "=" | "==" => have == want,
        "!=" => have != want,
        other => {
            return Err(DbtError::Config(format!(
                "dbt_project.yml: unknown version operator `{other}` in `{req}`"
            )));
        }
    })
}

/// One entry of packages.yml / dependencies.yml.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageSpec {
    /// `local: path`, relative to the project.
    #[serde(default)]
    pub local: Option<String>,
    /// `package: owner/name` from the dbt hub.
    #[serde(default)]
    pub package: Option<String>,
    /// `git: url`.
    #[serde(default)]
    pub git: Option<String>,
    /// Version range of a hub package.
    #[serde(default)]
    pub version: Option<serde_json::Value>,
    /// Git revision.
    #[serde(default)]
    pub revision: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PackagesFile {
    #[serde(default)]
    packages: Vec<PackageSpec>,
}

/// Where a package's files come from.
#[derive(Debug, Clone)]
pub enum PackageSource {
    /// A directory on disk (the root project, a `local:` package, or one installed under `dbt_packages/`).
    Dir(PathBuf),
    /// Macros shipped inside tripline (dbt_utils, dbt's own macros): `(path, source)` pairs.
    Builtin(&'static [(&'static str, &'static str)]),
}

/// A package of the project: the root project itself, a dependency, or a built-in macro package.
#[derive(Debug, Clone)]
pub struct Package {
    /// The package name (from its dbt_project.yml).
    pub name: String,
    /// Where its files are.
    pub source: PackageSource,
    /// Its dbt_project.yml; `None` for built-in macro packages.
    pub project: Option<ProjectFile>,
}

/// The packages a project depends on, read from packages.yml (or dependencies.yml).
///
/// `local:` packages are read from their directory; `dbt-labs/dbt_utils` is served by tripline's built-in
/// dbt_utils macros; other hub or git packages are used when `dbt deps` already installed them under the
/// packages install path, and are an error otherwise (tripline has no network `deps`).
pub fn load_packages(root: &Path, project: &ProjectFile) -> Result<Vec<Package>> {
    let mut specs = Vec::new();
    for file in ["packages.yml", "dependencies.yml"] {
        let path = root.join(file);
        if path.is_file() {
            let parsed: PackagesFile = read_yaml(&path, file)?;
            specs.extend(parsed.packages);
        }
    }
    let mut out = Vec::new();
    for spec in specs {
        if let Some(local) = &spec.local {
            let dir = root.join(local);
            let project = ProjectFile::load(&dir).map_err(|e| {
                DbtError::Config(format!("packages.yml: local package `{local}`: {e}"))
            })?;
            out.push(Package {
                name: project.name.clone(),
                source: PackageSource::Dir(dir),
                project: Some(project),
            });
            continue;
        }
        let name = spec
            .package
            .as_deref()
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
            .or_else(|| {
                spec.git.as_deref().map(|g| {
                    g.trim_end_matches('/')
                        .trim_end_matches(".git")
                        .rsplit('/')
                        .next()
                        .unwrap_or(g)
                        .to_string()
                })
            })
            .ok_or_else(|| {
                DbtError::Config(
                    "packages.yml: an entry has none of `local`, `package`, `git`".into(),
                )
            })?;
        let installed = root.join(&project.packages_install_path).join(&name);
        if name == "dbt_utils" {
            out.push(Package {
                name,
                source: PackageSource::Builtin(crate::builtins::DBT_UTILS_MACROS),
                project: None,
            });
        } else if installed.join("dbt_project.yml").is_file() {
            let project = ProjectFile::load(&installed)?;
            out.push(Package {
                name: project.name.clone(),
                source: PackageSource::Dir(installed),
                project: Some(project),
            });
        } else {
            return Err(DbtError::NotSupported(format!(
                "package `{}` from the hub or git: tripline has no network `deps`; use a `local:` package, or \
                 install it under {}/{name}",
                spec.package.or(spec.git).unwrap_or_default(),
                project.packages_install_path
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_requirements() {
        assert!(version_matches(">=1.5.0", (1, 10, 0)).unwrap());
        assert!(!version_matches("<1.9", (1, 10, 0)).unwrap());
        assert!(version_matches("1.10.0", (1, 10, 0)).unwrap());
    }
}
