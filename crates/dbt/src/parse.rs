//! The parse phase: read the project and its packages, render every node once with `execute = false` to
//! capture its `ref`/`source`/`config` calls, build test nodes from property files, and resolve the graph.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::value::Value;

use crate::adapter::{Adapter, OfflineAdapter, RelationName};
use crate::config::{ConfigMap, NodeConfig, folder_config, merge_config};
use crate::error::{DbtError, Result};
use crate::graph::Graph;
use crate::jinja::blocks::{BlockKind, split_blocks, test_block_as_macro};
use crate::jinja::{
    self, Captures, DBT_PACKAGE, JinjaEnv, MacroDef, MacroRegistry, RefTable, RefTarget,
    RenderScope, ScopeNode, StaticContext,
};
use crate::node::{DependsOn, MacroInfo, Node, RefCall, ResourceType, SourceNode, TestMetadata};
use crate::profile::{Target, load_target, profiles_dir};
use crate::project::{Package, PackageSource, ProjectFile, load_packages};
use crate::properties::{ColumnProperties, PropertyFile, ResourceProperties};
use crate::test_names::{GenericTestNames, generic_test_hash, generic_test_names};
use crate::yaml::parse_yaml;

/// How to load a project: the dbt CLI flags that matter before anything runs.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--project-dir` (the current directory when empty).
    pub project_dir: PathBuf,
    /// `--profiles-dir`.
    pub profiles_dir: Option<PathBuf>,
    /// `--target`.
    pub target_name: Option<String>,
    /// `--vars`, parsed (see [`parse_vars`]).
    pub vars: ConfigMap,
    /// A target given in code instead of profiles.yml.
    pub target: Option<Target>,
}

/// Parse the YAML of `--vars` (`'{key: value}'`).
pub fn parse_vars(text: &str) -> Result<ConfigMap> {
    parse_yaml(text, "--vars")
}

/// A parsed dbt project: its files, target, nodes and graph, ready to select and compile.
#[derive(Debug)]
pub struct DbtProject {
    /// The project directory.
    pub root: PathBuf,
    /// Its dbt_project.yml.
    pub project: ProjectFile,
    /// The resolved target.
    pub target: Target,
    /// Every node, source and macro, with the parent and child maps.
    pub manifest: crate::manifest::Manifest,
    /// The dependency graph over nodes and sources.
    pub graph: Graph,
    pub(crate) jinja: Arc<JinjaEnv>,
    pub(crate) refs: Arc<RefTable>,
    pub(crate) vars: HashMap<String, Arc<ConfigMap>>,
}

impl DbtProject {
    /// Load and parse a project: dbt_project.yml, packages, profiles.yml (unless a target is given), macros,
    /// property files, models, seeds, snapshots and tests. No database is touched.
    pub fn load(options: &LoadOptions) -> Result<Self> {
        let started = std::time::Instant::now();
        let root = if options.project_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            options.project_dir.clone()
        };
        let project = ProjectFile::load(&root)?;
        let target = match &options.target {
            Some(t) => t.clone(),
            None => {
                let profile = project.profile.clone().ok_or_else(|| {
                    DbtError::Config("dbt_project.yml has no `profile:` to connect with".into())
                })?;
                let dir = profiles_dir(options.profiles_dir.as_deref(), &root);
                load_target(&dir, &profile, options.target_name.as_deref())?
            }
        };
        let mut packages = vec![Package {
            name: project.name.clone(),
            source: PackageSource::Dir(root.clone()),
            project: Some(project.clone()),
        }];
        packages.extend(load_packages(&root, &project)?);
        packages.push(Package {
            name: DBT_PACKAGE.into(),
            source: PackageSource::Builtin(crate::builtins::DBT_MACROS),
            project: None,
        });
        let mut parser = Parser {
            root: root.clone(),
            project: project.clone(),
            target: target.clone(),
            packages,
            cli_vars: options.vars.clone(),
            vars: HashMap::new(),
            adapter: Arc::new(OfflineAdapter::new(
                target.adapter_type.clone(),
                target.database.clone(),
            )),
        };
        let result = parser.parse()?;
        tracing::debug!(target: "dbt", nodes = result.manifest.nodes.len(), elapsed = ?started.elapsed(), "parsed");
        Ok(result)
    }
}

struct Parser {
    root: PathBuf,
    project: ProjectFile,
    target: Target,
    packages: Vec<Package>,
    cli_vars: ConfigMap,
    vars: HashMap<String, Arc<ConfigMap>>,
    adapter: Arc<dyn Adapter>,
}

/// A file of a package: path relative to the package root, and its text.
struct PackageFile {
    rel: String,
    abs: PathBuf,
    text: String,
}

fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DbtError::io(dir, e)),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, exts, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
        {
            out.push(path);
        }
    }
    Ok(())
}

impl Parser {
    /// Files under the given resource directories of a package, with these extensions.
    fn files(&self, package: &Package, dirs: &[String], exts: &[&str]) -> Result<Vec<PackageFile>> {
        let mut out = Vec::new();
        match &package.source {
            PackageSource::Builtin(files) => {
                for (rel, text) in files.iter() {
                    let in_dir = dirs.iter().any(|d| rel.starts_with(&format!("{d}/")));
                    let ext_ok = exts.iter().any(|e| rel.ends_with(&format!(".{e}")));
                    if in_dir && ext_ok {
                        out.push(PackageFile {
                            rel: rel.to_string(),
                            abs: PathBuf::from(format!("<builtin {}>/{rel}", package.name)),
                            text: text.to_string(),
                        });
                    }
                }
            }
            PackageSource::Dir(base) => {
                for dir in dirs {
                    let mut paths = Vec::new();
                    walk(&base.join(dir), exts, &mut paths)?;
                    for abs in paths {
                        let rel = abs
                            .strip_prefix(base)
                            .unwrap_or(&abs)
                            .to_string_lossy()
                            .replace('\\', "/");
                        let text = if rel.ends_with(".csv") {
                            String::new()
                        } else {
                            std::fs::read_to_string(&abs).map_err(|e| DbtError::io(&abs, e))?
                        };
                        out.push(PackageFile { rel, abs, text });
                    }
                }
            }
        }
        Ok(out)
    }

    /// How errors name a file of a package.
    fn display(&self, package: &Package, rel: &str) -> String {
        match &package.source {
            PackageSource::Builtin(_) => format!("<builtin {}>/{rel}", package.name),
            PackageSource::Dir(base) => {
                let abs = base.join(rel);
                abs.strip_prefix(&self.root)
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_else(|_| abs.to_string_lossy().into_owned())
            }
        }
    }

    fn package_project<'a>(&self, package: &'a Package) -> Option<&'a ProjectFile> {
        package.project.as_ref()
    }

    fn compute_vars(&mut self) {
        let names: Vec<String> = self.packages.iter().map(|p| p.name.clone()).collect();
        let split = |vars: &ConfigMap| -> (ConfigMap, HashMap<String, ConfigMap>) {
            let mut global = ConfigMap::new();
            let mut scoped = HashMap::new();
            for (k, v) in vars {
                match v.as_object() {
                    Some(m) if names.contains(k) => {
                        scoped.insert(k.clone(), m.clone());
                    }
                    _ => {
                        global.insert(k.clone(), v.clone());
                    }
                }
            }
            (global, scoped)
        };
        let (root_global, root_scoped) = split(&self.project.vars);
        for package in &self.packages {
            let mut merged = ConfigMap::new();
            if package.name != self.project.name
                && let Some(p) = &package.project
            {
                let (g, s) = split(&p.vars);
                merged.extend(g);
                if let Some(own) = s.get(&package.name) {
                    merged.extend(own.clone());
                }
            }
            merged.extend(root_global.clone());
            if let Some(own) = root_scoped.get(&package.name) {
                merged.extend(own.clone());
            }
            merged.extend(self.cli_vars.clone());
            self.vars.insert(package.name.clone(), Arc::new(merged));
        }
    }

    fn collect_macros(&self) -> Result<MacroRegistry> {
        let mut registry = MacroRegistry {
            root: self.project.name.clone(),
            packages: self.packages.iter().map(|p| p.name.clone()).collect(),
            dispatch: self.project.dispatch.clone(),
            ..Default::default()
        };
        for package in &self.packages {
            let (macro_paths, test_paths) = match self.package_project(package) {
                Some(p) => (p.macro_paths.clone(), p.test_paths.clone()),
                None => (vec!["macros".into()], vec!["tests".into()]),
            };
            let mut files = self.files(package, &macro_paths, &["sql", "jinja", "j2"])?;
            files.extend(
                self.files(package, &test_paths, &["sql"])?
                    .into_iter()
                    .filter(|f| f.text.contains("{% test") || f.text.contains("{%- test")),
            );
            let entry = registry.macros.entry(package.name.clone()).or_default();
            for file in files {
                let display = self.display(package, &file.rel);
                let blocks = split_blocks(&file.text).map_err(|m| DbtError::Compile {
                    file: display.clone(),
                    line: String::new(),
                    message: m,
                    context: String::new(),
                })?;
                for block in blocks {
                    let (name, source) = match block.kind {
                        BlockKind::Macro => (block.name.clone(), block.padded.clone()),
                        BlockKind::Test => {
                            (format!("test_{}", block.name), test_block_as_macro(&block))
                        }
                        BlockKind::Materialization => {
                            return Err(DbtError::NotSupported(format!(
                                "custom materialization `{}` in {display}",
                                block.name
                            )));
                        }
                        BlockKind::Snapshot | BlockKind::Docs => continue,
                    };
                    let template = format!("{display}::{name}");
                    registry
                        .template_files
                        .insert(template.clone(), display.clone());
                    entry.insert(
                        name.clone(),
                        Arc::new(MacroDef {
                            unique_id: format!("macro.{}.{name}", package.name),
                            package: package.name.clone(),
                            name,
                            template,
                            path: file.rel.clone(),
                            display: display.clone(),
                            source,
                            description: String::new(),
                            arguments: Vec::new(),
                        }),
                    );
                }
            }
        }
        Ok(registry)
    }

    fn parse(&mut self) -> Result<DbtProject> {
        self.compute_vars();
        let mut registry = self.collect_macros()?;
        // Property files of every package.
        let mut properties: Vec<(usize, String, PropertyFile)> = Vec::new();
        for (i, package) in self.packages.iter().enumerate() {
            let Some(p) = self.package_project(package) else {
                continue;
            };
            let mut dirs = p.model_paths.clone();
            dirs.extend(p.seed_paths.clone());
            dirs.extend(p.snapshot_paths.clone());
            dirs.extend(p.macro_paths.clone());
            dirs.extend(p.analysis_paths.clone());
            dirs.extend(p.test_paths.clone());
            dirs.sort();
            dirs.dedup();
            for file in self.files(package, &dirs, &["yml", "yaml"])? {
                let display = self.display(package, &file.rel);
                let parsed: PropertyFile = parse_yaml(&file.text, &display)?;
                properties.push((i, file.rel, parsed));
            }
        }
        for (i, _, file) in &properties {
            let package = &self.packages[*i].name;
            for m in &file.macros {
                if let Some(def) = registry
                    .macros
                    .get_mut(package)
                    .and_then(|p| p.get_mut(&m.name))
                {
                    let d = Arc::make_mut(def);
                    d.description = m.description.clone();
                    d.arguments = m.arguments.clone();
                }
            }
        }
        let statics = StaticContext {
            target: self.target.jinja_map(),
            project_name: self.project.name.clone(),
            invocation_id: format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(
                    format!("{:?}", std::time::SystemTime::now()).as_bytes()
                )
            ),
            run_started_at: chrono::Utc::now().naive_utc(),
            flags: self.project.flags.clone(),
        };
        let jinja = Arc::new(JinjaEnv::new(registry, statics).map_err(
            |(file, line, message)| DbtError::Compile {
                file,
                line: line.map(|l| format!(" line {l}")).unwrap_or_default(),
                message,
                context: String::new(),
            },
        )?);
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut sources: BTreeMap<String, SourceNode> = BTreeMap::new();
        // Index of resource properties by (package, resource type, name).
        let mut props: HashMap<(String, ResourceType, String), (String, ResourceProperties)> =
            HashMap::new();
        for (i, rel, file) in &properties {
            let package = self.packages[*i].name.clone();
            for (kind, list) in [
                (ResourceType::Model, &file.models),
                (ResourceType::Seed, &file.seeds),
                (ResourceType::Snapshot, &file.snapshots),
                (ResourceType::Analysis, &file.analyses),
            ] {
                for p in list {
                    props.insert(
                        (package.clone(), kind, p.name.clone()),
                        (rel.clone(), p.clone()),
                    );
                }
            }
        }
        // Discover and parse nodes.
        for pi in 0..self.packages.len() {
            let package = self.packages[pi].clone();
            let Some(pp) = package.project.clone() else {
                continue;
            };
            for (kind, dirs) in [
                (ResourceType::Model, &pp.model_paths),
                (ResourceType::Analysis, &pp.analysis_paths),
            ] {
                if let Some(py) = self.files(&package, dirs, &["py"])?.first() {
                    return Err(DbtError::NotSupported(format!(
                        "Python models ({})",
                        self.display(&package, &py.rel)
                    )));
                }
                for file in self.files(&package, dirs, &["sql"])? {
                    let name = file_stem(&file.rel);
                    let node = self.new_node(
                        &package,
                        kind,
                        &name,
                        &file,
                        dirs,
                        file.text.clone(),
                        &props,
                    )?;
                    self.insert_node(&mut nodes, node)?;
                }
            }
            for file in self.files(&package, &pp.seed_paths, &["csv"])? {
                let name = file_stem(&file.rel);
                let node = self.new_node(
                    &package,
                    ResourceType::Seed,
                    &name,
                    &file,
                    &pp.seed_paths,
                    String::new(),
                    &props,
                )?;
                self.insert_node(&mut nodes, node)?;
            }
            for file in self.files(&package, &pp.snapshot_paths, &["sql"])? {
                let display = self.display(&package, &file.rel);
                let blocks = split_blocks(&file.text).map_err(|m| DbtError::Compile {
                    file: display.clone(),
                    line: String::new(),
                    message: m,
                    context: String::new(),
                })?;
                for block in blocks.into_iter().filter(|b| b.kind == BlockKind::Snapshot) {
                    let node = self.new_node(
                        &package,
                        ResourceType::Snapshot,
                        &block.name,
                        &file,
                        &pp.snapshot_paths,
                        block.body_padded.clone(),
                        &props,
                    )?;
                    self.insert_node(&mut nodes, node)?;
                }
            }
            for file in self.files(&package, &pp.test_paths, &["sql"])? {
                if file.text.contains("{% test") || file.text.contains("{%- test") {
                    continue;
                }
                let name = file_stem(&file.rel);
                let node = self.new_node(
                    &package,
                    ResourceType::Test,
                    &name,
                    &file,
                    &pp.test_paths,
                    file.text.clone(),
                    &props,
                )?;
                self.insert_node(&mut nodes, node)?;
            }
        }
        // Render every node with execute = false.
        let ids: Vec<String> = nodes.keys().cloned().collect();
        for id in &ids {
            let node = nodes
                .get_mut(id)
                .ok_or_else(|| DbtError::Internal(format!("lost node {id}")))?;
            if node.resource_type == ResourceType::Seed {
                self.finish_config(node, &ConfigMap::new())?;
                self.resolve_relation(&jinja, node)?;
                continue;
            }
            let captures = self.render_parse(&jinja, node)?;
            self.finish_config(node, &captures.config)?;
            node.refs = captures
                .refs
                .iter()
                .map(|(p, n)| RefCall {
                    name: n.clone(),
                    package: p.clone(),
                    version: None,
                })
                .collect();
            node.sources = captures
                .sources
                .iter()
                .map(|(s, t)| [s.clone(), t.clone()])
                .collect();
            node.depends_on.macros = captures.macros.iter().cloned().collect();
            self.resolve_relation(&jinja, node)?;
        }
        nodes.retain(|_, n| n.config.enabled);
        // Sources.
        for (i, rel, file) in &properties {
            let package = self.packages[*i].clone();
            for src in &file.sources {
                for table in &src.tables {
                    let node = self.new_source(&jinja, &package, rel, src, table)?;
                    if node.config.get("enabled").and_then(|v| v.as_bool()) == Some(false) {
                        continue;
                    }
                    sources.insert(node.unique_id.clone(), node);
                }
            }
        }
        // The ref table, then generic tests (their `to: ref(...)` arguments resolve through it).
        let refs = Arc::new(build_ref_table(&nodes, &sources));
        for (i, rel, file) in &properties {
            let package = self.packages[*i].clone();
            for (kind, list) in [
                (ResourceType::Model, &file.models),
                (ResourceType::Seed, &file.seeds),
                (ResourceType::Snapshot, &file.snapshots),
            ] {
                for p in list {
                    let id = format!("{}.{}.{}", kind.as_str(), package.name, p.name);
                    let Some(parent) = nodes.get(&id).cloned() else {
                        continue;
                    };
                    let target = TestTarget::Node(&parent);
                    self.tests_for(
                        &jinja,
                        &refs,
                        &package,
                        rel,
                        &target,
                        &p.data_tests,
                        None,
                        &mut nodes,
                    )?;
                    for col in &p.columns {
                        self.tests_for(
                            &jinja,
                            &refs,
                            &package,
                            rel,
                            &target,
                            &col.data_tests,
                            Some(&col.name),
                            &mut nodes,
                        )?;
                    }
                }
            }
            for src in &file.sources {
                for table in &src.tables {
                    let id = format!("source.{}.{}.{}", package.name, src.name, table.name);
                    let Some(source) = sources.get(&id).cloned() else {
                        continue;
                    };
                    let target = TestTarget::Source(&source);
                    self.tests_for(
                        &jinja,
                        &refs,
                        &package,
                        rel,
                        &target,
                        &table.data_tests,
                        None,
                        &mut nodes,
                    )?;
                    for col in &table.columns {
                        self.tests_for(
                            &jinja,
                            &refs,
                            &package,
                            rel,
                            &target,
                            &col.data_tests,
                            Some(&col.name),
                            &mut nodes,
                        )?;
                    }
                }
            }
        }
        // Resolve refs and sources into depends_on; then the graph (cycles).
        for node in nodes.values_mut() {
            let mut deps: Vec<String> = Vec::new();
            for r in &node.refs {
                let t = refs
                    .resolve(r.package.as_deref(), &r.name, &node.package_name, &self.project.name)
                    .ok_or_else(|| {
                        let what = match &r.package {
                            Some(p) => format!("ref('{p}', '{}')", r.name),
                            None => format!("ref('{}')", r.name),
                        };
                        DbtError::Graph(format!(
                            "{} ({}) depends on {what}, which was not found (no enabled model, seed or snapshot has \
                             that name)",
                            node.unique_id, node.original_file_path
                        ))
                    })?;
                if !deps.contains(&t.unique_id) {
                    deps.push(t.unique_id.clone());
                }
            }
            for [s, t] in &node.sources {
                let (id, _) = refs.sources.get(&(s.clone(), t.clone())).ok_or_else(|| {
                    DbtError::Graph(format!(
                        "{} ({}) depends on source('{s}', '{t}'), which is not defined in any property file",
                        node.unique_id, node.original_file_path
                    ))
                })?;
                if !deps.contains(id) {
                    deps.push(id.clone());
                }
            }
            if let Some(attached) = &node.attached_node
                && !deps.contains(attached)
            {
                deps.insert(0, attached.clone());
            }
            node.depends_on.nodes = deps;
        }
        let macros = jinja
            .registry
            .macros
            .values()
            .flat_map(|m| m.values())
            .map(|d| {
                (
                    d.unique_id.clone(),
                    MacroInfo {
                        unique_id: d.unique_id.clone(),
                        name: d.name.clone(),
                        package_name: d.package.clone(),
                        path: d.path.clone(),
                        original_file_path: d.path.clone(),
                        macro_sql: d.source.trim_start_matches('\n').to_string(),
                        description: d.description.clone(),
                        arguments: d.arguments.clone(),
                    },
                )
            })
            .collect();
        let graph = Graph::build(&nodes, &sources)?;
        let manifest = crate::manifest::Manifest::new(
            self.project.name.clone(),
            nodes,
            sources,
            macros,
            &graph,
        );
        Ok(DbtProject {
            root: self.root.clone(),
            project: self.project.clone(),
            target: self.target.clone(),
            manifest,
            graph,
            jinja,
            refs,
            vars: std::mem::take(&mut self.vars),
        })
    }

    fn insert_node(&self, nodes: &mut BTreeMap<String, Node>, node: Node) -> Result<()> {
        if let Some(existing) = nodes.get(&node.unique_id) {
            return Err(DbtError::Graph(format!(
                "two {}s are named `{}`: {} and {} (names must be unique within a package)",
                node.resource_type.as_str(),
                node.name,
                existing.original_file_path,
                node.original_file_path
            )));
        }
        nodes.insert(node.unique_id.clone(), node);
        Ok(())
    }

    fn project_block<'a>(&self, project: &'a ProjectFile, kind: ResourceType) -> &'a ConfigMap {
        match kind {
            ResourceType::Seed => &project.seeds,
            ResourceType::Snapshot => &project.snapshots,
            ResourceType::Test => &project.tests,
            ResourceType::Source => &project.sources,
            ResourceType::Model | ResourceType::Analysis => &project.models,
        }
    }

    /// Folder configs for a node: its own package's dbt_project.yml, then the root project's.
    fn project_configs(&self, package: &Package, kind: ResourceType, fqn: &[String]) -> ConfigMap {
        let mut config = ConfigMap::new();
        let default = match kind {
            ResourceType::Model => "view",
            ResourceType::Seed => "seed",
            ResourceType::Test => "test",
            ResourceType::Snapshot => "snapshot",
            ResourceType::Analysis => "view",
            ResourceType::Source => "",
        };
        config.insert("materialized".into(), default.into());
        if let Some(p) = &package.project
            && p.name != self.project.name
        {
            merge_config(
                &mut config,
                &folder_config(self.project_block(p, kind), fqn),
            );
        }
        merge_config(
            &mut config,
            &folder_config(self.project_block(&self.project, kind), fqn),
        );
        config
    }

    #[allow(clippy::too_many_arguments)]
    fn new_node(
        &self,
        package: &Package,
        kind: ResourceType,
        name: &str,
        file: &PackageFile,
        dirs: &[String],
        raw_code: String,
        props: &HashMap<(String, ResourceType, String), (String, ResourceProperties)>,
    ) -> Result<Node> {
        let dir = dirs
            .iter()
            .find(|d| file.rel.starts_with(&format!("{d}/")))
            .cloned()
            .unwrap_or_default();
        let path = file
            .rel
            .strip_prefix(&format!("{dir}/"))
            .unwrap_or(&file.rel)
            .to_string();
        let mut fqn = vec![package.name.clone()];
        fqn.extend(
            path.split('/')
                .rev()
                .skip(1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .map(String::from),
        );
        fqn.push(name.to_string());
        let mut config = self.project_configs(package, kind, &fqn);
        let mut node = Node {
            unique_id: format!("{}.{}.{name}", kind.as_str(), package.name),
            resource_type: kind,
            name: name.to_string(),
            package_name: package.name.clone(),
            path,
            original_file_path: file.rel.clone(),
            file_path: file.abs.clone(),
            fqn,
            config: NodeConfig::from_map(&ConfigMap::new()).map_err(DbtError::Internal)?,
            config_map: ConfigMap::new(),
            depends_on: DependsOn::default(),
            refs: Vec::new(),
            sources: Vec::new(),
            description: String::new(),
            columns: BTreeMap::new(),
            raw_code,
            relation: RelationName::new(None, "", name),
            tags: Vec::new(),
            meta: ConfigMap::new(),
            patch_path: None,
            test_metadata: None,
            column_name: None,
            attached_node: None,
        };
        if let Some((rel, p)) = props.get(&(package.name.clone(), kind, name.to_string())) {
            let mut layer = p.config.clone();
            if !p.tags.is_empty() {
                layer.insert(
                    "tags".into(),
                    p.tags
                        .iter()
                        .cloned()
                        .map(serde_json::Value::from)
                        .collect(),
                );
            }
            if !p.meta.is_empty() {
                layer.insert("meta".into(), serde_json::Value::Object(p.meta.clone()));
            }
            merge_config(&mut config, &layer);
            node.description = p.description.clone();
            node.columns = p
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.clone()))
                .collect();
            node.patch_path = Some(format!("{}://{rel}", package.name));
        }
        node.config_map = config;
        Ok(node)
    }

    /// Merge the `config()` calls captured while rendering over the file configs, and type the result.
    fn finish_config(&self, node: &mut Node, captured: &ConfigMap) -> Result<()> {
        merge_config(&mut node.config_map, captured);
        node.config = NodeConfig::from_map(&node.config_map).map_err(|e| {
            DbtError::Config(format!(
                "{} ({}): invalid config: {e}",
                node.unique_id, node.original_file_path
            ))
        })?;
        node.tags = node.config.tags.clone();
        node.meta = node.config.meta.clone();
        if node.config.contract.enforced {
            let missing: Vec<&str> = node
                .columns
                .values()
                .filter(|c| c.data_type.is_none())
                .map(|c| c.name.as_str())
                .collect();
            if node.columns.is_empty() || !missing.is_empty() {
                return Err(DbtError::Config(format!(
                    "{} ({}) has `contract: {{enforced: true}}` but {}",
                    node.unique_id,
                    node.original_file_path,
                    if node.columns.is_empty() {
                        "no columns are declared in a property file".to_string()
                    } else {
                        format!("these columns have no data_type: {}", missing.join(", "))
                    }
                )));
            }
        }
        Ok(())
    }

    fn scope_for(&self, node: &Node, execute: bool) -> Arc<RenderScope> {
        let vars = self
            .vars
            .get(&node.package_name)
            .cloned()
            .unwrap_or_else(|| Arc::new(self.cli_vars.clone()));
        let this = if node.relation.schema.is_empty() {
            RelationName::new(
                self.adapter.default_database(),
                self.target.schema.clone(),
                node.name.clone(),
            )
        } else {
            node.relation.clone()
        };
        let scope_node = ScopeNode {
            package: node.package_name.clone(),
            config: node.config_map.clone(),
            this: this.clone(),
        };
        let ctx = Value::from_iter([
            ("execute", Value::from(execute)),
            (
                "this",
                Value::from_object(jinja::objects::Relation::new(this, self.adapter.clone())),
            ),
            ("model", crate::compile::model_value(node)),
            ("schema", Value::from(self.target.schema.clone())),
            ("database", Value::from(self.target.database.clone())),
        ]);
        Arc::new(RenderScope {
            node: scope_node,
            execute,
            full_refresh: false,
            adapter: self.adapter.clone(),
            refs: None,
            vars,
            registry: Arc::new(MacroRegistry::default()),
            ctx,
            captures: Mutex::new(Captures::default()),
        })
    }

    fn render_parse(&self, jinja: &Arc<JinjaEnv>, node: &Node) -> Result<Captures> {
        let mut scope = Arc::try_unwrap(self.scope_for(node, false))
            .map_err(|_| DbtError::Internal("scope shared".into()))?;
        scope.registry = jinja.registry.clone();
        let scope = Arc::new(scope);
        jinja
            .render(scope.clone(), &node.original_file_path, &node.raw_code)
            .map_err(|e| crate::compile::compile_error(&jinja.registry, &e, node))?;
        let captures = std::mem::take(&mut *scope.captures());
        Ok(captures)
    }

    /// Database, schema and identifier of a node, through the (overridable) `generate_*_name` macros.
    fn resolve_relation(&self, jinja: &Arc<JinjaEnv>, node: &mut Node) -> Result<()> {
        let custom_schema = if node.resource_type == ResourceType::Snapshot {
            node.config
                .target_schema
                .clone()
                .or(node.config.schema.clone())
        } else if node.resource_type == ResourceType::Test {
            Some(
                node.config
                    .schema
                    .clone()
                    .unwrap_or_else(|| "dbt_test__audit".into()),
            )
        } else {
            node.config.schema.clone()
        };
        // dbt's default naming, computed directly unless a package overrides the naming macros.
        let overridden = |name: &str| {
            let adapter_variant = format!("{}__{name}", self.target.adapter_type);
            jinja.registry.macros.iter().any(|(pkg, macros)| {
                pkg != DBT_PACKAGE
                    && (macros.contains_key(name)
                        || macros.contains_key(&format!("default__{name}"))
                        || macros.contains_key(&adapter_variant))
            })
        };
        if !overridden("generate_schema_name") && !overridden("generate_alias_name") {
            let schema = if node.resource_type == ResourceType::Snapshot
                && node.config.target_schema.is_some()
            {
                node.config.target_schema.clone().unwrap_or_default()
            } else {
                match &custom_schema {
                    Some(custom) => format!("{}_{}", self.target.schema, custom.trim()),
                    None => self.target.schema.clone(),
                }
            };
            let identifier = node
                .config
                .alias
                .clone()
                .map_or_else(|| node.name.clone(), |a| a.trim().to_string());
            let database = node
                .config
                .database
                .clone()
                .or(node.config.target_database.clone())
                .or_else(|| self.adapter.default_database());
            node.relation = RelationName::new(database, schema, identifier);
            return Ok(());
        }
        let mut scope = Arc::try_unwrap(self.scope_for(node, false))
            .map_err(|_| DbtError::Internal("scope shared".into()))?;
        scope.registry = jinja.registry.clone();
        let scope = Arc::new(scope);
        let model = crate::compile::model_value(node);
        let call = |expr: &str, arg: Option<String>| -> Result<String> {
            let vars = Value::from_iter([
                ("arg", arg.map_or(Value::from(()), Value::from)),
                ("node", model.clone()),
            ]);
            jinja
                .eval(scope.clone(), expr, vars)
                .map(|v| v.to_string().trim().to_string())
                .map_err(|e| crate::compile::compile_error(&jinja.registry, &e, node))
        };
        let schema = if node.resource_type == ResourceType::Snapshot
            && node.config.target_schema.is_some()
        {
            node.config.target_schema.clone().unwrap_or_default()
        } else {
            call("generate_schema_name(arg, node)", custom_schema)?
        };
        let identifier = call("generate_alias_name(arg, node)", node.config.alias.clone())?;
        let database = match node
            .config
            .database
            .clone()
            .or(node.config.target_database.clone())
        {
            Some(db) => Some(db),
            None => self.adapter.default_database(),
        };
        node.relation = RelationName::new(database, schema, identifier);
        Ok(())
    }

    fn render_yaml_string(
        &self,
        jinja: &Arc<JinjaEnv>,
        text: &str,
        package: &str,
        file: &str,
    ) -> Result<String> {
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(text.to_string());
        }
        let fake = Node {
            package_name: package.to_string(),
            original_file_path: file.to_string(),
            unique_id: format!("yaml.{package}"),
            ..placeholder_node()
        };
        let mut scope = Arc::try_unwrap(self.scope_for(&fake, false))
            .map_err(|_| DbtError::Internal("scope shared".into()))?;
        scope.registry = jinja.registry.clone();
        jinja
            .render(Arc::new(scope), file, text)
            .map(|s| s.trim().to_string())
            .map_err(|e| crate::compile::compile_error(&jinja.registry, &e, &fake))
    }

    fn new_source(
        &self,
        jinja: &Arc<JinjaEnv>,
        package: &Package,
        rel: &str,
        src: &crate::properties::SourceProperties,
        table: &crate::properties::SourceTableProperties,
    ) -> Result<SourceNode> {
        let display = self.display(package, rel);
        let render = |t: &str| self.render_yaml_string(jinja, t, &package.name, &display);
        let schema = render(src.schema.as_deref().unwrap_or(&src.name))?;
        let database = match &src.database {
            Some(db) => Some(render(db)?),
            None => self.adapter.default_database(),
        };
        let identifier = render(table.identifier.as_deref().unwrap_or(&table.name))?;
        let freshness = match &table.freshness {
            Some(serde_json::Value::Null) => None,
            Some(f) => Some(f.clone()),
            None => src
                .freshness
                .clone()
                .or_else(|| src.config.get("freshness").cloned()),
        };
        let loaded_at_field = match table
            .loaded_at_field
            .as_ref()
            .or(src.loaded_at_field.as_ref())
        {
            Some(f) => Some(render(f)?),
            None => None,
        };
        let mut tags = src.tags.clone();
        tags.extend(table.tags.iter().cloned());
        let mut config = self.project_configs(
            package,
            ResourceType::Source,
            &[package.name.clone(), src.name.clone(), table.name.clone()],
        );
        config.remove("materialized");
        merge_config(&mut config, &src.config);
        merge_config(&mut config, &table.config);
        let mut meta = src.meta.clone();
        meta.extend(table.meta.clone());
        Ok(SourceNode {
            unique_id: format!("source.{}.{}.{}", package.name, src.name, table.name),
            resource_type: ResourceType::Source,
            source_name: src.name.clone(),
            name: table.name.clone(),
            package_name: package.name.clone(),
            path: rel.to_string(),
            original_file_path: rel.to_string(),
            fqn: vec![package.name.clone(), src.name.clone(), table.name.clone()],
            relation: RelationName::new(database, schema, identifier),
            loaded_at_field,
            freshness,
            description: table.description.clone(),
            source_description: src.description.clone(),
            loader: src.loader.clone(),
            columns: table
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.clone()))
                .collect::<BTreeMap<String, ColumnProperties>>(),
            tags,
            meta,
            config,
        })
    }

    /// Build the test nodes of one `data_tests:` list.
    #[allow(clippy::too_many_arguments)]
    fn tests_for(
        &self,
        jinja: &Arc<JinjaEnv>,
        refs: &Arc<RefTable>,
        package: &Package,
        rel: &str,
        target: &TestTarget<'_>,
        tests: &[serde_json::Value],
        column: Option<&str>,
        nodes: &mut BTreeMap<String, Node>,
    ) -> Result<()> {
        let display = self.display(package, rel);
        for (i, entry) in tests.iter().enumerate() {
            let spec = TestSpec::parse(entry).map_err(|m| DbtError::Yaml {
                file: display.clone(),
                location: String::new(),
                message: format!(
                    "{} `{}`, test #{}: {m}",
                    target.kind(),
                    target.name(),
                    i + 1
                ),
            })?;
            let mut kwargs = spec.kwargs.clone();
            let column_name = spec
                .kwargs
                .get("column_name")
                .and_then(|v| v.as_str())
                .map(String::from)
                .or(column.map(String::from));
            kwargs.remove("column_name");
            // Names and unique id as dbt-core forms them (see test_names.rs).
            let test_type = match (&spec.namespace, target) {
                (Some(ns), TestTarget::Source(_)) => format!("{ns}_source_{}", spec.test_name),
                (Some(ns), _) => format!("{ns}_{}", spec.test_name),
                (None, TestTarget::Source(_)) => format!("source_{}", spec.test_name),
                (None, _) => spec.test_name.clone(),
            };
            let mut dbt_args = kwargs.clone();
            if let Some(c) = &column_name {
                dbt_args.insert("column_name".into(), c.clone().into());
            }
            let names = match &spec.custom_name {
                Some(custom) => GenericTestNames {
                    full: custom.clone(),
                    short: custom.clone(),
                },
                None => generic_test_names(&test_type, &target.name_for_test(), &dbt_args),
            };
            let name = names.full.clone();
            dbt_args.insert(
                "model".into(),
                format!("{{{{ get_where_subquery({}) }}}}", target.dbt_ref_text()).into(),
            );
            let hash =
                generic_test_hash(&name, &spec.test_name, spec.namespace.as_deref(), &dbt_args);
            let unique_id = format!("test.{}.{name}.{hash}", package.name);
            if nodes.contains_key(&unique_id) {
                continue;
            }
            let macro_name = format!("test_{}", spec.test_name);
            let found = match &spec.namespace {
                Some(ns) => jinja.registry.get(ns, &macro_name).is_some(),
                None => jinja
                    .registry
                    .resolve(&macro_name, Some(&package.name))
                    .is_some(),
            };
            if !found {
                return Err(DbtError::Compile {
                    file: display.clone(),
                    line: String::new(),
                    message: format!(
                        "{} `{}` uses the test `{}`, but no generic test (`{{% test {} %}}`) has that name{}",
                        target.kind(),
                        target.name(),
                        spec.full_name(),
                        spec.test_name,
                        if spec.namespace.as_deref() == Some("dbt_utils") {
                            " (is dbt_utils listed in packages.yml?)"
                        } else {
                            ""
                        }
                    ),
                    context: String::new(),
                });
            }
            let mut fqn = target.fqn_dirs();
            fqn.push(name.clone());
            let mut config = self.project_configs(package, ResourceType::Test, &fqn);
            merge_config(&mut config, &spec.config);
            // A long name's relation (store_failures) is the short name, as dbt sets it.
            if names.short != names.full && !config.contains_key("alias") {
                config.insert("alias".into(), names.short.clone().into());
            }
            let mut all_kwargs = kwargs.clone();
            if let Some(c) = &column_name {
                all_kwargs.insert("column_name".into(), c.clone().into());
            }
            all_kwargs.insert(
                "model".into(),
                format!("{{{{ get_where_subquery({}) }}}}", target.ref_text()).into(),
            );
            let mut node = Node {
                unique_id: unique_id.clone(),
                resource_type: ResourceType::Test,
                name: name.clone(),
                package_name: package.name.clone(),
                path: format!("{}.sql", names.short),
                original_file_path: rel.to_string(),
                file_path: PathBuf::new(),
                fqn,
                config: NodeConfig::from_map(&ConfigMap::new()).map_err(DbtError::Internal)?,
                config_map: config,
                depends_on: DependsOn::default(),
                refs: Vec::new(),
                sources: Vec::new(),
                description: String::new(),
                columns: BTreeMap::new(),
                raw_code: format!(
                    "{{{{ {}{macro_name}(**_dbt_generic_test_kwargs) }}}}",
                    spec.namespace
                        .as_deref()
                        .map(|n| format!("{n}."))
                        .unwrap_or_default()
                ),
                relation: RelationName::new(None, "", name.clone()),
                tags: Vec::new(),
                meta: ConfigMap::new(),
                patch_path: None,
                test_metadata: Some(TestMetadata {
                    name: spec.test_name.clone(),
                    kwargs: all_kwargs,
                    namespace: spec.namespace.clone(),
                }),
                column_name: column_name.clone(),
                attached_node: Some(target.unique_id()),
            };
            match target {
                TestTarget::Node(n) => node.refs.push(RefCall {
                    name: n.name.clone(),
                    package: Some(n.package_name.clone()),
                    version: None,
                }),
                TestTarget::Source(s) => node.sources.push([s.source_name.clone(), s.name.clone()]),
            }
            // Arguments that are ref()/source() expressions add dependencies.
            for value in kwargs.values() {
                if let Some(expr) = value.as_str().filter(|s| is_relation_expr(s)) {
                    let scope = self.test_scope(jinja, refs, &node);
                    jinja
                        .eval(scope.clone(), expr, Value::from(()))
                        .map_err(|e| crate::compile::compile_error(&jinja.registry, &e, &node))?;
                    let captured = std::mem::take(&mut *scope.captures());
                    for (p, n) in captured.refs {
                        node.refs.push(RefCall {
                            name: n,
                            package: p,
                            version: None,
                        });
                    }
                    for (s, t) in captured.sources {
                        node.sources.push([s, t]);
                    }
                }
            }
            self.finish_config(&mut node, &ConfigMap::new())?;
            self.resolve_relation(jinja, &mut node)?;
            if node.config.enabled {
                nodes.insert(unique_id, node);
            }
        }
        Ok(())
    }

    fn test_scope(
        &self,
        jinja: &Arc<JinjaEnv>,
        refs: &Arc<RefTable>,
        node: &Node,
    ) -> Arc<RenderScope> {
        let mut scope = Arc::try_unwrap(self.scope_for(node, false)).unwrap_or_else(|a| {
            // Never shared at this point; rebuild defensively.
            RenderScope {
                node: a.node.clone(),
                execute: a.execute,
                full_refresh: a.full_refresh,
                adapter: a.adapter.clone(),
                refs: None,
                vars: a.vars.clone(),
                registry: a.registry.clone(),
                ctx: a.ctx.clone(),
                captures: Mutex::new(Captures::default()),
            }
        });
        scope.registry = jinja.registry.clone();
        scope.refs = Some(refs.clone());
        Arc::new(scope)
    }
}

/// Whether a test argument is a relation expression to evaluate (`ref('x')`, `source('a', 'b')`).
pub(crate) fn is_relation_expr(s: &str) -> bool {
    let t = s.trim();
    (t.starts_with("ref(") || t.starts_with("source(")) && t.ends_with(')')
}

fn placeholder_node() -> Node {
    Node {
        unique_id: String::new(),
        resource_type: ResourceType::Model,
        name: String::new(),
        package_name: String::new(),
        path: String::new(),
        original_file_path: String::new(),
        file_path: PathBuf::new(),
        fqn: Vec::new(),
        config: NodeConfig::from_map(&ConfigMap::new()).unwrap_or_else(|_| unreachable_config()),
        config_map: ConfigMap::new(),
        depends_on: DependsOn::default(),
        refs: Vec::new(),
        sources: Vec::new(),
        description: String::new(),
        columns: BTreeMap::new(),
        raw_code: String::new(),
        relation: RelationName::new(None, "", ""),
        tags: Vec::new(),
        meta: ConfigMap::new(),
        patch_path: None,
        test_metadata: None,
        column_name: None,
        attached_node: None,
    }
}

fn unreachable_config() -> NodeConfig {
    serde_json::from_str("{}").unwrap_or_else(|e| panic!("empty config must deserialize: {e}"))
}

fn file_stem(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    file.rsplit_once('.').map_or(file, |(s, _)| s).to_string()
}

/// What a generic test is attached to.
enum TestTarget<'a> {
    Node(&'a Node),
    Source(&'a SourceNode),
}

impl TestTarget<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Node(n) => n.resource_type.as_str(),
            Self::Source(_) => "source",
        }
    }
    fn name(&self) -> String {
        match self {
            Self::Node(n) => n.name.clone(),
            Self::Source(s) => format!("{}.{}", s.source_name, s.name),
        }
    }
    fn name_for_test(&self) -> String {
        match self {
            Self::Node(n) => n.name.clone(),
            Self::Source(s) => format!("{}_{}", s.source_name, s.name),
        }
    }
    fn unique_id(&self) -> String {
        match self {
            Self::Node(n) => n.unique_id.clone(),
            Self::Source(s) => s.unique_id.clone(),
        }
    }
    /// The relation of `model` in dbt-core's test metadata (what the unique id's hash covers).
    fn dbt_ref_text(&self) -> String {
        match self {
            Self::Node(n) => format!("ref('{}')", n.name),
            Self::Source(s) => format!("source('{}', '{}')", s.source_name, s.name),
        }
    }
    fn ref_text(&self) -> String {
        match self {
            Self::Node(n) => format!("ref('{}', '{}')", n.package_name, n.name),
            Self::Source(s) => format!("source('{}', '{}')", s.source_name, s.name),
        }
    }
    fn fqn_dirs(&self) -> Vec<String> {
        match self {
            Self::Node(n) => n.fqn[..n.fqn.len().saturating_sub(1)].to_vec(),
            Self::Source(s) => vec![s.package_name.clone(), s.source_name.clone()],
        }
    }
}

/// A test entry of a property file, in any of dbt's spellings.
struct TestSpec {
    test_name: String,
    namespace: Option<String>,
    kwargs: ConfigMap,
    config: ConfigMap,
    custom_name: Option<String>,
}

/// Keys of a test entry that are configs in the pre-1.10 spelling.
const TEST_CONFIG_KEYS: &[&str] = &[
    "severity",
    "warn_if",
    "error_if",
    "store_failures",
    "where",
    "limit",
    "tags",
    "enabled",
    "fail_calc",
    "meta",
    "alias",
    "schema",
    "database",
];

impl TestSpec {
    fn full_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}.{}", self.test_name),
            None => self.test_name.clone(),
        }
    }

    fn parse(entry: &serde_json::Value) -> std::result::Result<Self, String> {
        let (full, body) = match entry {
            serde_json::Value::String(s) => (s.clone(), ConfigMap::new()),
            serde_json::Value::Object(m) if m.len() == 1 => {
                let (k, v) = m.iter().next().ok_or("empty test entry")?;
                match v {
                    serde_json::Value::Object(body) => (k.clone(), body.clone()),
                    serde_json::Value::Null => (k.clone(), ConfigMap::new()),
                    _ => return Err(format!("the arguments of `{k}` must be a mapping")),
                }
            }
            serde_json::Value::Object(m) => {
                // The long form: `- name: my_test\n  test_name: unique\n  ...`.
                let test_name = m.get("test_name").and_then(|v| v.as_str()).ok_or(
                    "a test mapping needs exactly one key (the test name), or `test_name:`",
                )?;
                let mut body = m.clone();
                body.remove("test_name");
                (test_name.to_string(), body)
            }
            _ => return Err("a test must be a name or a mapping".into()),
        };
        let (namespace, test_name) = match full.split_once('.') {
            Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
            None => (None, full.clone()),
        };
        let mut kwargs = ConfigMap::new();
        let mut config = ConfigMap::new();
        let mut custom_name = None;
        for (k, v) in body {
            match k.as_str() {
                "config" => {
                    let m = v.as_object().ok_or("`config:` must be a mapping")?;
                    merge_config(&mut config, m);
                }
                "arguments" => {
                    let m = v.as_object().ok_or("`arguments:` must be a mapping")?;
                    kwargs.extend(m.clone());
                }
                "name" => custom_name = v.as_str().map(String::from),
                "description" => {}
                key if TEST_CONFIG_KEYS.contains(&key) => {
                    config.insert(key.to_string(), v);
                }
                _ => {
                    kwargs.insert(k, v);
                }
            }
        }
        Ok(Self {
            test_name,
            namespace,
            kwargs,
            config,
            custom_name,
        })
    }
}

fn build_ref_table(
    nodes: &BTreeMap<String, Node>,
    sources: &BTreeMap<String, SourceNode>,
) -> RefTable {
    let mut table = RefTable::default();
    for node in nodes.values() {
        if matches!(
            node.resource_type,
            ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
        ) {
            table
                .nodes
                .entry(node.name.clone())
                .or_default()
                .push(RefTarget {
                    package: node.package_name.clone(),
                    unique_id: node.unique_id.clone(),
                    relation: node.relation.clone(),
                    ephemeral: node.is_ephemeral(),
                });
        }
    }
    for s in sources.values() {
        table.sources.insert(
            (s.source_name.clone(), s.name.clone()),
            (s.unique_id.clone(), s.relation.clone()),
        );
    }
    table
}
