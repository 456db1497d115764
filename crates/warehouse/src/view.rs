//! Views: a stored query, planned afresh every time it is read, so it always sees the current version of the
//! tables under it (a Delta table replaced or merged into after the view was made included). Filters on a view
//! are applied to its query before it runs, so partition and file pruning reach the tables underneath.
//!
//! ```text
//! warehouse/<dataset>/_views/<view>.json   {"sql": "SELECT ..."}
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

use crate::scan::ScanReport;
use crate::statement::{CreateView, TableName};
use crate::view_cache::{self, ViewCache};
use crate::{Result, RunMode, StatementResult, Warehouse, WarehouseError, empty_result};

/// A view's definition, as stored in the lake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ViewDefinition {
    /// The query, as written.
    pub(crate) sql: String,
}

pub(crate) fn view_path(name: &TableName) -> ObjectPath {
    ObjectPath::from(format!(
        "warehouse/{}/_views/{}.json",
        name.dataset, name.table
    ))
}

/// A view as DataFusion reads it.
pub(crate) struct ViewProvider {
    /// `dataset.view`.
    name: String,
    sql: String,
    schema: SchemaRef,
    ctx: SessionContext,
    /// The tables and views the query reads (as of the view's creation; views under it keep their own).
    tables: BTreeSet<String>,
    cache: Arc<ViewCache>,
}

impl ViewProvider {
    /// The view's query, planned now (so it reads the views under it as they are now).
    pub(crate) async fn plan(&self) -> datafusion::common::Result<LogicalPlan> {
        Ok(self.ctx.sql(&self.sql).await?.into_unoptimized_plan())
    }

    /// The session the view is planned in.
    pub(crate) fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Add the tables under the view to `out`.
    pub(crate) fn tables_under(&self, out: &mut BTreeSet<String>) {
        out.extend(self.tables.iter().cloned());
    }
}

impl std::fmt::Debug for ViewProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewProvider")
            .field("sql", &self.sql)
            .finish()
    }
}

fn unqualified(e: Expr) -> datafusion::common::Result<Expr> {
    e.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
            Column::new_unqualified(c.name),
        ))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

#[async_trait::async_trait]
impl TableProvider for ViewProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        if let Some(kept) = view_cache::kept(&self.cache, &self.name, self, &self.schema).await {
            // Filters are inexact here: DataFusion applies them again above the scan.
            return kept.scan(state, projection, filters, limit).await;
        }
        let mut df = self.ctx.sql(&self.sql).await?;
        for filter in filters {
            df = df.filter(unqualified(filter.clone())?)?;
        }
        if let Some(projection) = projection {
            let columns: Vec<Expr> = projection
                .iter()
                .map(|i| Expr::Column(Column::new_unqualified(self.schema.field(*i).name())))
                .collect();
            df = df.select(columns)?;
        }
        if let Some(limit) = limit {
            df = df.limit(0, Some(limit))?;
        }
        df.create_physical_plan().await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

impl Warehouse {
    pub(crate) async fn view_definition(&self, name: &TableName) -> Result<Option<ViewDefinition>> {
        self.lake
            .get_json::<ViewDefinition>(&view_path(name))
            .await
            .map_err(WarehouseError::from)
    }

    /// The provider of a view: its query planned once now for the schema (and to check it), and again at each read.
    pub(crate) async fn view_provider(
        &self,
        name: &TableName,
        sql: &str,
    ) -> Result<Arc<ViewProvider>> {
        let df = self
            .ctx
            .sql_with_options(
                sql,
                SQLOptions::new()
                    .with_allow_ddl(false)
                    .with_allow_dml(false),
            )
            .await
            .map_err(WarehouseError::query)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut seen = std::collections::HashSet::new();
        for field in schema.fields() {
            if !seen.insert(field.name().clone()) {
                return Err(WarehouseError::Ddl(format!(
                    "view {name}: the query returns two columns named {}; give them distinct names",
                    field.name()
                )));
            }
        }
        let mut tables = BTreeSet::new();
        view_cache::tables_under(df.logical_plan(), &mut tables);
        Ok(Arc::new(ViewProvider {
            name: name.to_string(),
            sql: sql.to_string(),
            schema,
            ctx: self.ctx.clone(),
            tables,
            cache: Arc::clone(&self.view_cache),
        }))
    }

    /// `CREATE [OR REPLACE] VIEW ds.v AS SELECT ...`.
    pub(crate) async fn create_view(
        &self,
        c: &CreateView,
        mode: RunMode,
    ) -> Result<StatementResult> {
        if let Some(info) = self.table_info(&c.name).await? {
            if info.kind != crate::TableKind::View {
                return Err(WarehouseError::Ddl(format!(
                    "{} is a {} table, not a view: DROP TABLE it first",
                    c.name, info.kind
                )));
            }
            if c.if_not_exists {
                return Ok(empty_result(
                    "create_view",
                    ScanReport::default(),
                    format!("{} already exists; nothing changed", c.name),
                ));
            }
            if !c.or_replace {
                return Err(WarehouseError::AlreadyExists(c.name.to_string()));
            }
        }
        let provider = self.view_provider(&c.name, &c.query).await?;
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "create_view",
                ScanReport::default(),
                format!("would create view {}", c.name),
            ));
        }
        self.lake
            .put_json(
                &view_path(&c.name),
                &ViewDefinition {
                    sql: c.query.clone(),
                },
            )
            .await?;
        let columns = provider.schema().fields().len();
        self.register(&c.name, provider)?;
        Ok(empty_result(
            "create_view",
            ScanReport::default(),
            format!("created view {} ({columns} columns)", c.name),
        ))
    }
}
