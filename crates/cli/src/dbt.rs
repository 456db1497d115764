//! `tripline dbt`: dbt's commands on a dbt project, running on the embedded warehouse (`type: tripline`) or on
//! PostgreSQL (`type: postgres`), with dbt's flags, console lines, artifacts and exit codes (0 ok, 1 a node
//! failed, 2 the project or the command is wrong).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use tripline_dbt::adapters::{self, RunAdapter};
use tripline_dbt::run::results::{clock, finished_line, result_line, start_line};
use tripline_dbt::run::{self, NodeStatus, RunCommand, RunEvent, RunOptions, RunResults};
use tripline_dbt::{
    CompileOptions, DbtError, DbtProject, IndirectSelection, LoadOptions, ResourceType, parse_vars,
};

use crate::{Context, Failure};

/// Run a dbt project: models, seeds, tests and docs on the embedded warehouse or PostgreSQL.
#[derive(Debug, Args)]
#[command(
    after_help = "Profiles: `type: tripline` runs in the warehouse over this project's lake (schemas are \
datasets); `type: postgres` takes dbt-postgres' keys (host, port, user, password, dbname, schema).\n\n\
Exit codes: 0 success, 1 a model, seed or test failed, 2 the project, profile or command is wrong.\n\n\
Examples:\n  tripline -C examples/nyc-taxi dbt build\n  \
tripline dbt run -s +fact_trips --exclude tag:mart --threads 4\n  \
tripline dbt test --target postgres --select stg_green_tripdata"
)]
pub struct DbtArgs {
    #[command(subcommand)]
    command: DbtCommand,
}

#[derive(Debug, Subcommand)]
enum DbtCommand {
    /// Show the project, profile and target, and test the connection.
    Debug(ProjectFlags),
    /// Check packages.yml: dbt_utils is built in, local packages are read in place.
    Deps(ProjectFlags),
    /// Delete the clean-targets (target/ by default).
    Clean(ProjectFlags),
    /// Load the CSV seeds as tables.
    Seed(RunFlags),
    /// Compile the selected nodes to target/compiled and write manifest.json.
    Compile(RunFlags),
    /// Build the selected models.
    Run(RunFlags),
    /// Run the selected data tests.
    Test(RunFlags),
    /// Seeds, models, snapshots and tests in DAG order; the children of a failure are skipped.
    Build(RunFlags),
    /// Run the selected snapshots.
    Snapshot(RunFlags),
    /// List the selected nodes.
    #[command(alias = "list")]
    Ls(LsFlags),
    /// Documentation: `generate` writes catalog.json; `serve` serves the docs site.
    Docs {
        #[command(subcommand)]
        command: DocsCommand,
    },
    /// Sources: `freshness` checks how recent their rows are.
    Source {
        #[command(subcommand)]
        command: SourceCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DocsCommand {
    /// Compile the project and write manifest.json, catalog.json and the docs site to target/.
    Generate(RunFlags),
    /// Serve the docs site from target/.
    Serve(ServeFlags),
}

#[derive(Debug, Subcommand)]
enum SourceCommand {
    /// Check `loaded_at_field` against `freshness:` of each selected source; writes target/sources.json.
    Freshness(RunFlags),
}

/// Where the project and profile are (every command).
#[derive(Debug, Args, Clone)]
struct ProjectFlags {
    /// The directory of profiles.yml (default: the project directory when it has one, else ~/.dbt).
    #[arg(long, value_name = "DIR", env = "DBT_PROFILES_DIR")]
    profiles_dir: Option<PathBuf>,
    /// The target of the profile (default: the profile's `target:`).
    #[arg(short = 't', long)]
    target: Option<String>,
    /// Variables as YAML: `--vars '{is_test_run: false}'`.
    #[arg(long, value_name = "YAML")]
    vars: Option<String>,
}

/// Selection and run flags.
#[derive(Debug, Args, Clone)]
struct RunFlags {
    #[command(flatten)]
    project: ProjectFlags,
    /// Nodes to include (dbt selector syntax: `+name`, `tag:x`, `path:models/staging`, `config.materialized:view`).
    #[arg(short = 's', long = "select", alias = "models", short_alias = 'm', num_args = 1.., value_name = "SELECTOR")]
    select: Vec<String>,
    /// Nodes to leave out.
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    exclude: Vec<String>,
    /// Nodes run at once (default: the target's `threads`).
    #[arg(long)]
    threads: Option<usize>,
    /// Stop at the first failure.
    #[arg(short = 'x', long)]
    fail_fast: bool,
    /// Rebuild incremental models and seeds from scratch.
    #[arg(short = 'f', long)]
    full_refresh: bool,
    /// Keep the failing rows of every test in tables of the audit schema.
    #[arg(long)]
    store_failures: bool,
    /// Which tests of selected nodes are added.
    #[arg(long, value_enum, default_value = "eager")]
    indirect_selection: Indirect,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Indirect {
    Eager,
    Cautious,
    Empty,
}

#[derive(Debug, Args, Clone)]
struct LsFlags {
    #[command(flatten)]
    run: RunFlags,
    /// Only these resource types (model, seed, test, snapshot, source, analysis).
    #[arg(long = "resource-type", alias = "resource-types", num_args = 1..)]
    resource_type: Vec<String>,
    /// How each node is printed.
    #[arg(long, value_enum, default_value = "selector")]
    output: LsOutput,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LsOutput {
    Selector,
    Name,
    Path,
    Json,
}

#[derive(Debug, Args, Clone)]
struct ServeFlags {
    #[command(flatten)]
    project: ProjectFlags,
    /// The port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
}

fn usage(e: DbtError) -> Failure {
    Failure::usage(e.to_string())
}

impl ProjectFlags {
    fn spec(&self) -> DbtProjectSpec {
        DbtProjectSpec {
            dir: None,
            profiles_dir: self.profiles_dir.clone(),
            target: self.target.clone(),
            vars: self.vars.clone(),
        }
    }

    fn dir(&self, ctx: &Context) -> PathBuf {
        self.spec().dir(ctx)
    }

    fn load(&self, ctx: &Context) -> Result<DbtProject, Failure> {
        self.spec().load(ctx)
    }
}

/// Which dbt project to load and how: its directory, the profiles directory, the target and `--vars`.
#[derive(Debug, Clone, Default)]
pub struct DbtProjectSpec {
    /// The dbt project directory (relative to the tripline project); `None`: the tripline project itself when it
    /// holds `dbt_project.yml`, else its `dbt/` folder.
    pub dir: Option<PathBuf>,
    /// The directory of profiles.yml (`None`: the dbt project's when it has one, else ~/.dbt).
    pub profiles_dir: Option<PathBuf>,
    /// The profile's target (`None`: the profile's `target:`).
    pub target: Option<String>,
    /// Variables as YAML text (`{is_test_run: false}`).
    pub vars: Option<String>,
}

impl DbtProjectSpec {
    /// The dbt project: `-C/--project-dir` itself when it holds `dbt_project.yml` (dbt's `--project-dir`),
    /// else its `dbt/` folder when that holds one (a tripline project with its dbt project inside).
    pub fn dir(&self, ctx: &Context) -> PathBuf {
        if let Some(dir) = &self.dir {
            return if dir.is_absolute() {
                dir.clone()
            } else {
                ctx.project_dir.join(dir)
            };
        }
        let nested = ctx.project_dir.join("dbt");
        if !ctx.project_dir.join("dbt_project.yml").is_file()
            && nested.join("dbt_project.yml").is_file()
        {
            nested
        } else {
            ctx.project_dir.clone()
        }
    }

    /// Parses the project, its profile and its property files.
    pub fn load(&self, ctx: &Context) -> Result<DbtProject, Failure> {
        let vars = match &self.vars {
            Some(text) => parse_vars(text).map_err(usage)?,
            None => Default::default(),
        };
        DbtProject::load(&LoadOptions {
            project_dir: self.dir(ctx),
            profiles_dir: self.profiles_dir.clone(),
            target_name: self.target.clone(),
            vars,
            target: None,
        })
        .map_err(usage)
    }
}

/// `tripline dbt ...`.
pub async fn run(ctx: &Context, args: DbtArgs) -> Result<(), Failure> {
    match args.command {
        DbtCommand::Debug(flags) => debug(ctx, &flags).await,
        DbtCommand::Deps(flags) => deps(ctx, &flags),
        DbtCommand::Clean(flags) => clean(ctx, &flags),
        DbtCommand::Compile(flags) => compile(ctx, &flags).await,
        DbtCommand::Ls(flags) => list(ctx, &flags),
        DbtCommand::Seed(flags) => execute(ctx, &flags, RunCommand::Seed).await,
        DbtCommand::Run(flags) => execute(ctx, &flags, RunCommand::Run).await,
        DbtCommand::Test(flags) => execute(ctx, &flags, RunCommand::Test).await,
        DbtCommand::Build(flags) => execute(ctx, &flags, RunCommand::Build).await,
        DbtCommand::Snapshot(flags) => execute(ctx, &flags, RunCommand::Snapshot).await,
        DbtCommand::Docs { command } => match command {
            DocsCommand::Generate(flags) => docs_generate(ctx, &flags).await,
            DocsCommand::Serve(flags) => docs_serve(ctx, &flags).await,
        },
        DbtCommand::Source { command } => match command {
            SourceCommand::Freshness(flags) => source_freshness(ctx, &flags).await,
        },
    }
}

fn say(ctx: &Context, line: impl AsRef<str>) {
    ctx.out.say(format!("{}  {}", clock(), line.as_ref()));
}

fn indirect(flags: &RunFlags) -> IndirectSelection {
    match flags.indirect_selection {
        Indirect::Eager => IndirectSelection::Eager,
        Indirect::Cautious => IndirectSelection::Cautious,
        Indirect::Empty => IndirectSelection::Empty,
    }
}

fn found_line(project: &DbtProject) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in project.manifest.nodes.values() {
        let name = match n.resource_type {
            ResourceType::Model => "model",
            ResourceType::Seed => "seed",
            ResourceType::Test => "data test",
            ResourceType::Snapshot => "snapshot",
            ResourceType::Analysis => "analysis",
            ResourceType::Source => "source",
        };
        *counts.entry(name).or_default() += 1;
    }
    let mut parts: Vec<String> = counts
        .iter()
        .map(|(k, n)| {
            format!(
                "{n} {k}{}",
                if *n == 1 || *k == "analysis" { "" } else { "s" }
            )
        })
        .collect();
    let sources = project.manifest.sources.len();
    parts.push(format!(
        "{sources} source{}",
        if sources == 1 { "" } else { "s" }
    ));
    parts.push(format!("{} macros", project.manifest.macros.len()));
    format!("Found {}", parts.join(", "))
}

async fn connect(ctx: &Context, project: &DbtProject) -> Result<Arc<dyn RunAdapter>, Failure> {
    // Exit code 2 as dbt, but a refused connection stays an outside system's failure (a flow task may retry it).
    adapters::connect(&project.target, &ctx.config.lake.root, &ctx.project_dir)
        .await
        .map_err(|e| Failure {
            usage: true,
            ..Failure::from_error(e)
        })
}

async fn debug(ctx: &Context, flags: &ProjectFlags) -> Result<(), Failure> {
    let dir = flags.dir(ctx);
    say(
        ctx,
        format!(
            "Running with dbt=1.10.0 (tripline {})",
            env!("CARGO_PKG_VERSION")
        ),
    );
    say(ctx, format!("project dir: {}", dir.display()));
    let project = flags.load(ctx)?;
    say(ctx, "dbt_project.yml file [OK found and valid]");
    say(ctx, "profiles.yml file [OK found and valid]");
    let t = &project.target;
    say(ctx, "Connection:");
    say(ctx, format!("  type: {}", t.adapter_type));
    say(
        ctx,
        format!("  profile: {}  target: {}", t.profile_name, t.name),
    );
    if let Some(db) = &t.database {
        say(ctx, format!("  database: {db}"));
    }
    say(ctx, format!("  schema: {}", t.schema));
    say(ctx, format!("  threads: {}", t.threads));
    let adapter = connect(ctx, &project).await.map_err(|f| {
        Failure::reported(
            format!("Connection test: [ERROR]\n  {}", f.message),
            tripline_core::ErrorDomain::External,
        )
    })?;
    adapter.execute("select 1 as ok", true).await.map_err(|e| {
        Failure::reported(
            format!("Connection test: [ERROR]\n  {e}"),
            tripline_core::ErrorDomain::External,
        )
    })?;
    say(ctx, "  Connection test: [OK connection ok]");
    say(ctx, "All checks passed!");
    Ok(())
}

fn deps(ctx: &Context, flags: &ProjectFlags) -> Result<(), Failure> {
    let project = flags.load(ctx)?;
    let packages = project.root.join("packages.yml");
    if !packages.is_file() {
        say(ctx, "Warning: No packages were found in packages.yml");
        return Ok(());
    }
    say(
        ctx,
        "Packages are ready: dbt-labs/dbt_utils is built into tripline, local packages are read in place",
    );
    Ok(())
}

fn clean(ctx: &Context, flags: &ProjectFlags) -> Result<(), Failure> {
    let project = flags.load(ctx)?;
    for dir in project.clean_targets() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Failure::usage(format!("cannot delete {}: {e}", dir.display())))?;
            say(ctx, format!("Cleaned {}", dir.display()));
        }
    }
    say(ctx, "Finished cleaning all paths.");
    Ok(())
}

fn select(project: &DbtProject, flags: &RunFlags) -> Result<tripline_dbt::Selection, Failure> {
    project
        .select(&flags.select, &flags.exclude, indirect(flags))
        .map_err(usage)
}

async fn compile(ctx: &Context, flags: &RunFlags) -> Result<(), Failure> {
    let project = Arc::new(flags.project.load(ctx)?);
    say(ctx, found_line(&project));
    let selection = select(&project, flags)?;
    let adapter = connect(ctx, &project).await?;
    let options = CompileOptions {
        adapter: adapter.as_adapter(),
        execute: true,
        full_refresh: flags.full_refresh,
    };
    let ids: Vec<String> = selection.in_order().cloned().collect();
    let p = project.clone();
    let compiled = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for id in &ids {
            let node = p.node(id)?;
            if node.is_ephemeral() || node.resource_type == ResourceType::Seed {
                continue;
            }
            let c = p.compile_node(id, &options)?;
            p.write_compiled(&c)?;
            out.push(c);
        }
        Ok::<_, DbtError>(out)
    })
    .await
    .map_err(|e| Failure::usage(format!("compile: {e}")))?
    .map_err(usage)?;
    let mut manifest = project.manifest.clone();
    for c in &compiled {
        manifest
            .compiled
            .insert(c.unique_id.clone(), c.compiled_code.clone());
    }
    manifest.write(&project.target_dir()).map_err(usage)?;
    if compiled.len() == 1 && !flags.select.is_empty() {
        say(
            ctx,
            format!(
                "Compiled node '{}' is:",
                project.manifest.nodes[&compiled[0].unique_id].name
            ),
        );
        ctx.out.say(&compiled[0].compiled_code);
    }
    say(
        ctx,
        format!(
            "Compiled {} nodes to {}",
            compiled.len(),
            project.target_dir().join("compiled").display()
        ),
    );
    Ok(())
}

fn list(ctx: &Context, flags: &LsFlags) -> Result<(), Failure> {
    let project = flags.run.project.load(ctx)?;
    let selection = project
        .select(&flags.run.select, &flags.run.exclude, indirect(&flags.run))
        .map_err(usage)?;
    let wanted = |t: &str| {
        flags.resource_type.is_empty() || flags.resource_type.iter().any(|r| r == t || r == "all")
    };
    let mut lines = Vec::new();
    for id in &selection.selected {
        if let Some(n) = project.manifest.nodes.get(id) {
            if !wanted(n.resource_type.as_str()) {
                continue;
            }
            lines.push(match flags.output {
                LsOutput::Selector => n.fqn.join("."),
                LsOutput::Name => n.name.clone(),
                LsOutput::Path => n.original_file_path.clone(),
                LsOutput::Json => json!({
                    "name": n.name, "resource_type": n.resource_type.as_str(), "package_name": n.package_name,
                    "original_file_path": n.original_file_path, "unique_id": n.unique_id,
                    "alias": n.relation.identifier, "config": n.config, "tags": n.tags,
                    "depends_on": n.depends_on,
                })
                .to_string(),
            });
        } else if let Some(s) = project.manifest.sources.get(id) {
            if !wanted("source") {
                continue;
            }
            lines.push(match flags.output {
                LsOutput::Selector => {
                    format!("source:{}.{}.{}", s.package_name, s.source_name, s.name)
                }
                LsOutput::Name => format!("{}.{}", s.source_name, s.name),
                LsOutput::Path => s.original_file_path.clone(),
                LsOutput::Json => json!({
                    "name": s.name, "source_name": s.source_name, "resource_type": "source",
                    "package_name": s.package_name, "unique_id": s.unique_id,
                })
                .to_string(),
            });
        }
    }
    for line in lines {
        outln!("{line}");
    }
    Ok(())
}

impl RunFlags {
    fn invocation(&self, command: RunCommand) -> DbtInvocation {
        DbtInvocation {
            command,
            project: self.project.spec(),
            select: self.select.clone(),
            exclude: self.exclude.clone(),
            threads: self.threads,
            fail_fast: self.fail_fast,
            full_refresh: self.full_refresh,
            store_failures: self.store_failures,
            indirect: indirect(self),
        }
    }
}

/// One run of a node-running dbt command (`build`, `run`, `test`, `seed`, `snapshot`) with dbt's flags: what
/// `tripline dbt build ...` and the flow task `type: dbt` both execute, through [`run_nodes`].
#[derive(Debug, Clone)]
pub struct DbtInvocation {
    /// The command.
    pub command: RunCommand,
    /// The project, profile, target and vars.
    pub project: DbtProjectSpec,
    /// `--select`.
    pub select: Vec<String>,
    /// `--exclude`.
    pub exclude: Vec<String>,
    /// `--threads` (`None`: the target's).
    pub threads: Option<usize>,
    /// `--fail-fast`.
    pub fail_fast: bool,
    /// `--full-refresh`.
    pub full_refresh: bool,
    /// `--store-failures`.
    pub store_failures: bool,
    /// `--indirect-selection`.
    pub indirect: IndirectSelection,
}

impl DbtInvocation {
    /// A run of `command` with dbt's defaults.
    pub fn new(command: RunCommand) -> Self {
        Self {
            command,
            project: DbtProjectSpec::default(),
            select: Vec::new(),
            exclude: Vec::new(),
            threads: None,
            fail_fast: false,
            full_refresh: false,
            store_failures: false,
            indirect: IndirectSelection::Eager,
        }
    }
}

/// What [`run_nodes`] did: the project it ran and each node's result (the artifacts are written).
pub struct DbtRun {
    /// The parsed project.
    pub project: Arc<DbtProject>,
    /// Every node's result.
    pub results: RunResults,
}

/// One console line of a dbt run as dbt prints it (without the clock), with the node and result it is about.
#[derive(Clone, Copy)]
pub struct DbtLine<'a> {
    /// The line.
    pub text: &'a str,
    /// The node of a `START` or result line.
    pub node: Option<&'a tripline_dbt::Node>,
    /// The result of a node's result line.
    pub result: Option<&'a tripline_dbt::run::NodeResult>,
}

impl<'a> DbtLine<'a> {
    fn text(text: &'a str) -> Self {
        Self {
            text,
            node: None,
            result: None,
        }
    }
}

/// Receives each console line of a dbt run.
pub type LineSink = Arc<dyn Fn(DbtLine<'_>) + Send + Sync>;

/// Runs a node-running dbt command: loads the project, selects, connects, runs along the DAG, writes
/// `manifest.json` and `run_results.json`. Each console line (header, `START`/`OK`/`ERROR` per node) goes to
/// `lines`. Node failures are in the results (see [`RunResults::failed`]); the `Err` side is for a project,
/// profile, selector or connection that is wrong (dbt's exit code 2).
pub async fn run_nodes(
    ctx: &Context,
    invocation: &DbtInvocation,
    lines: LineSink,
) -> Result<DbtRun, Failure> {
    let project = Arc::new(invocation.project.load(ctx)?);
    let threads = invocation.threads.unwrap_or(project.target.threads).max(1);
    let say = |text: &str| lines(DbtLine::text(text));
    say(&format!(
        "Running with dbt=1.10.0 (tripline {})",
        env!("CARGO_PKG_VERSION")
    ));
    say(&found_line(&project));
    let selection = project
        .select(&invocation.select, &invocation.exclude, invocation.indirect)
        .map_err(usage)?;
    let adapter = connect(ctx, &project).await?;
    say("");
    say(&format!(
        "Concurrency: {threads} threads (target='{}')",
        project.target.name
    ));
    say("");
    let nodes = project.clone();
    let node_lines = lines.clone();
    let events: run::EventSink = Arc::new(move |event| match &event {
        RunEvent::Started {
            index,
            total,
            unique_id,
        } => {
            let node = &nodes.manifest.nodes[unique_id];
            node_lines(DbtLine {
                text: &start_line(*index, *total, node),
                node: Some(node),
                result: None,
            });
        }
        RunEvent::Finished {
            index,
            total,
            result,
        } => {
            let node = &nodes.manifest.nodes[&result.unique_id];
            node_lines(DbtLine {
                text: &result_line(*index, *total, node, result),
                node: Some(node),
                result: Some(result),
            });
        }
    });
    let options = RunOptions {
        command: invocation.command,
        threads,
        fail_fast: invocation.fail_fast,
        full_refresh: invocation.full_refresh,
        store_failures: invocation.store_failures,
    };
    let results = run::execute(project.clone(), adapter, &selection, options, events)
        .await
        .map_err(usage)?;
    write_artifacts(&project, &results, invocation)?;
    Ok(DbtRun { project, results })
}

impl DbtRun {
    /// The lines dbt prints after the run: the `Finished running` line, each error and warning with its message,
    /// and the `Done. PASS=..` line.
    pub fn summary_lines(&self) -> Vec<String> {
        let project = &self.project;
        let results = &self.results;
        let nodes = &project.manifest.nodes;
        let mut out = vec![String::new(), finished_line(results, nodes), String::new()];
        let errors: Vec<_> = results
            .results
            .iter()
            .filter(|r| r.status.is_failure())
            .collect();
        let warnings: Vec<_> = results
            .results
            .iter()
            .filter(|r| r.status == NodeStatus::Warn)
            .collect();
        if errors.is_empty() && warnings.is_empty() {
            out.push("Completed successfully".into());
        } else {
            out.push(format!(
                "Completed with {} error{}, 0 partial successes, and {} warning{}:",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" }
            ));
            for r in errors.iter().chain(warnings.iter()) {
                let Some(n) = nodes.get(&r.unique_id) else {
                    continue;
                };
                out.push(String::new());
                let kind = match (r.status, n.resource_type) {
                    (NodeStatus::Fail, _) => "Failure in",
                    (NodeStatus::Warn, _) => "Warning in",
                    (_, ResourceType::Test) => "Error in",
                    _ => "Database Error in",
                };
                out.push(format!(
                    "{kind} {} {} ({})",
                    n.resource_type.as_str(),
                    n.name,
                    n.original_file_path
                ));
                for line in r.message.lines() {
                    out.push(format!("  {line}"));
                }
                if n.resource_type == ResourceType::Test {
                    out.push(String::new());
                    out.push(format!(
                        "  compiled code at {}",
                        compiled_path(project, n).display()
                    ));
                }
            }
        }
        out.push(String::new());
        out.push(results.summary_line());
        out
    }

    /// The nodes that failed (errors and failing tests), as `resource_type name: first line of the message`.
    pub fn failures(&self) -> Vec<String> {
        self.results
            .results
            .iter()
            .filter(|r| r.status.is_failure())
            .map(|r| {
                let name = self.project.manifest.nodes.get(&r.unique_id).map_or_else(
                    || r.unique_id.clone(),
                    |n| format!("{} {}", n.resource_type.as_str(), n.name),
                );
                let first = r.message.lines().next().unwrap_or_default().trim();
                let what = match (r.status, r.failures) {
                    (NodeStatus::Fail, Some(n)) => {
                        format!("{n} failing row{}", if n == 1 { "" } else { "s" })
                    }
                    _ => first.to_string(),
                };
                if what.is_empty() {
                    name
                } else {
                    format!("{name}: {what}")
                }
            })
            .collect()
    }
}

async fn execute(ctx: &Context, flags: &RunFlags, command: RunCommand) -> Result<(), Failure> {
    let out = ctx.out;
    let lines: LineSink = Arc::new(move |line| {
        if !out.quiet && !out.json {
            outln!("{}  {}", clock(), line.text);
        }
    });
    let done = run_nodes(ctx, &flags.invocation(command), lines).await?;
    report(ctx, &done);
    if done.results.failed() {
        return Err(Failure::reported(
            String::new(),
            tripline_core::ErrorDomain::User,
        ));
    }
    Ok(())
}

fn write_artifacts(
    project: &DbtProject,
    results: &RunResults,
    invocation: &DbtInvocation,
) -> Result<(), Failure> {
    let target = project.target_dir();
    let mut manifest = project.manifest.clone();
    for r in &results.results {
        if let Some(code) = &r.compiled_code {
            manifest.compiled.insert(r.unique_id.clone(), code.clone());
        }
    }
    manifest.write(&target).map_err(usage)?;
    let invocation_id = format!(
        "{:x}",
        std::process::id() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
    );
    let args = json!({
        "which": invocation.command.as_str(),
        "select": invocation.select,
        "exclude": invocation.exclude,
        "full_refresh": invocation.full_refresh,
        "fail_fast": invocation.fail_fast,
        "target": project.target.name,
        "project_dir": project.root.display().to_string(),
    });
    results
        .write(&target, &invocation_id, args, &project.manifest.nodes)
        .map_err(usage)?;
    Ok(())
}

fn report(ctx: &Context, done: &DbtRun) {
    let results = &done.results;
    if ctx.out.json {
        let rows: Vec<serde_json::Value> = results
            .results
            .iter()
            .map(|r| {
                json!({"unique_id": r.unique_id, "status": r.status.as_str(), "message": r.message,
                "failures": r.failures, "execution_time": r.execution_time})
            })
            .collect();
        ctx.out.json(&json!({"results": rows, "elapsed_time": results.elapsed, "success": !results.failed()}));
        return;
    }
    for line in done.summary_lines() {
        say(ctx, line);
    }
}

fn compiled_path(project: &DbtProject, n: &tripline_dbt::Node) -> PathBuf {
    let mut path = Path::new(&project.project.target_path)
        .join("compiled")
        .join(&n.package_name);
    path.push(&n.original_file_path);
    if n.test_metadata.is_some() {
        path.push(format!("{}.sql", n.name));
    }
    path
}

async fn docs_generate(ctx: &Context, flags: &RunFlags) -> Result<(), Failure> {
    let project = Arc::new(flags.project.load(ctx)?);
    say(ctx, found_line(&project));
    let adapter = connect(ctx, &project).await?;
    let options = CompileOptions {
        adapter: adapter.clone().as_adapter(),
        execute: true,
        full_refresh: false,
    };
    let p = project.clone();
    // Compile every node for the site's "Compiled" panes; a node that cannot compile yet (its upstream tables
    // are missing) is shown with its source only.
    let compiled = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (id, node) in &p.manifest.nodes {
            if node.is_ephemeral() || node.resource_type == ResourceType::Seed {
                continue;
            }
            if let Ok(c) = p.compile_node(id, &options) {
                let _ = p.write_compiled(&c);
                out.push(c);
            }
        }
        out
    })
    .await
    .map_err(|e| Failure::usage(format!("docs generate: {e}")))?;
    let mut manifest = project.manifest.clone();
    for c in &compiled {
        manifest
            .compiled
            .insert(c.unique_id.clone(), c.compiled_code.clone());
    }
    manifest.write(&project.target_dir()).map_err(usage)?;
    let catalog = tripline_dbt::docs::catalog(&project, adapter.as_adapter().as_ref())
        .await
        .map_err(usage)?;
    tripline_dbt::docs::write_site(&project, &catalog).map_err(usage)?;
    say(
        ctx,
        format!(
            "Catalog written to {}",
            project.target_dir().join("catalog.json").display()
        ),
    );
    Ok(())
}

async fn docs_serve(ctx: &Context, flags: &ServeFlags) -> Result<(), Failure> {
    let dir = flags.project.dir(ctx);
    let project = flags.project.load(ctx)?;
    let target = project.target_dir();
    if !target.join("manifest.json").is_file() {
        return Err(Failure::usage(format!(
            "no manifest.json in {}: run `tripline dbt docs generate` first",
            target.display()
        )));
    }
    let _ = dir;
    let listener = tokio::net::TcpListener::bind((flags.host.as_str(), flags.port))
        .await
        .map_err(|e| {
            Failure::usage(format!(
                "cannot listen on {}:{}: {e}",
                flags.host, flags.port
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::usage(e.to_string()))?;
    say(ctx, format!("Serving docs at http://{addr}"));
    say(ctx, "Press Ctrl+C to exit.");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let target = target.clone();
                tokio::spawn(async move {
                    let _ = serve_one(stream, &target).await;
                });
            }
        }
    }
}

/// Answer one HTTP/1.1 request of the docs site: the page (from the binary) or an artifact from target/.
async fn serve_one(mut stream: tokio::net::TcpStream, target: &Path) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or("/").split('?').next().unwrap_or("/");
    let (status, kind, body): (&str, &str, Vec<u8>) = match (method, path) {
        ("GET" | "HEAD", "/" | "/index.html") => (
            "200 OK",
            "text/html; charset=utf-8",
            tripline_dbt::docs::INDEX_HTML.as_bytes().to_vec(),
        ),
        (
            "GET" | "HEAD",
            "/manifest.json" | "/catalog.json" | "/run_results.json" | "/sources.json",
        ) => match tokio::fs::read(target.join(&path[1..])).await {
            Ok(bytes) => ("200 OK", "application/json", bytes),
            Err(_) => (
                "404 Not Found",
                "text/plain",
                format!("{} not found: run `tripline dbt docs generate`", &path[1..]).into_bytes(),
            ),
        },
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", b"not found".to_vec()),
        _ => ("405 Method Not Allowed", "text/plain", b"GET only".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(&body).await?;
    }
    stream.shutdown().await
}

async fn source_freshness(ctx: &Context, flags: &RunFlags) -> Result<(), Failure> {
    let project = flags.project.load(ctx)?;
    say(ctx, found_line(&project));
    let selection = select(&project, flags)?;
    let sources = tripline_dbt::freshness::checkable_sources(&project, &selection.selected);
    let adapter = connect(ctx, &project).await?;
    let started = std::time::Instant::now();
    let total = sources.len();
    let mut results = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let name = format!("freshness of {}.{}", source.source_name, source.name);
        say(
            ctx,
            tripline_dbt::run::results::fancy_line(i + 1, total, &format!("START {name}"), "RUN"),
        );
        let r = tripline_dbt::freshness::check(adapter.as_ref(), source).await;
        let status = match r.status.as_str() {
            "pass" => "PASS",
            "warn" => "WARN",
            "error" => "ERROR STALE",
            _ => "ERROR",
        };
        say(
            ctx,
            tripline_dbt::run::results::fancy_line(
                i + 1,
                total,
                &format!("{status} {name}"),
                &format!("{status} in {:.2}s", r.execution_time),
            ),
        );
        if let Some(e) = &r.error {
            say(ctx, format!("  {e}"));
        }
        results.push(r);
    }
    tripline_dbt::freshness::write_sources_json(
        &project,
        &results,
        started.elapsed().as_secs_f64(),
    )
    .map_err(usage)?;
    let failed = results
        .iter()
        .filter(|r| r.status == "error" || r.status == "runtime error")
        .count();
    let warned = results.iter().filter(|r| r.status == "warn").count();
    say(
        ctx,
        format!(
            "Done. PASS={} WARN={warned} ERROR={failed} SKIP=0 TOTAL={total}",
            total - failed - warned
        ),
    );
    if failed > 0 {
        return Err(Failure::reported(
            String::new(),
            tripline_core::ErrorDomain::User,
        ));
    }
    Ok(())
}
