//! `type: tripline`: the embedded warehouse over the lake. A dbt schema is a dataset, a relation is
//! `dataset.table`; relations are found with `SHOW TABLES IN ds` and columns with `DESCRIBE ds.t`.

use std::sync::Arc;

use async_trait::async_trait;
use tripline_core::{Classify, ErrorDomain};
use tripline_warehouse::{RunMode, Warehouse, WarehouseError};

use super::{RunAdapter, batches_to_rows, status_message};
use crate::adapter::{
    Adapter, AdapterError, ColumnInfo, ExistingRelation, QueryResult, RelationKind, RelationName,
    TRIPLINE, quote_if_needed, render_tripline_relation,
};
use crate::run::dialect::Dialect;

/// The embedded warehouse of a tripline project.
pub struct WarehouseAdapter {
    warehouse: Arc<Warehouse>,
}

impl std::fmt::Debug for WarehouseAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseAdapter").finish()
    }
}

fn adapter_error(e: WarehouseError) -> AdapterError {
    match e.domain() {
        ErrorDomain::User => AdapterError::user(e.to_string()),
        _ => AdapterError::external(e.to_string()),
    }
}

impl WarehouseAdapter {
    /// An adapter over an open warehouse.
    pub fn new(warehouse: Arc<Warehouse>) -> Self {
        warehouse.session().register_udf(super::md5_udf::md5_udf());
        Self { warehouse }
    }

    /// The warehouse the adapter runs statements in.
    pub fn warehouse(&self) -> &Arc<Warehouse> {
        &self.warehouse
    }

    /// Open the warehouse in the lake at `lake_root` of the tripline project at `project_dir`.
    pub async fn open(
        lake_root: &str,
        project_dir: &std::path::Path,
    ) -> Result<Self, AdapterError> {
        let warehouse = Warehouse::open(lake_root, project_dir)
            .await
            .map_err(adapter_error)?;
        Ok(Self::new(Arc::new(warehouse)))
    }
}

#[async_trait]
impl Adapter for WarehouseAdapter {
    fn adapter_type(&self) -> &str {
        TRIPLINE
    }

    fn quote(&self, identifier: &str) -> String {
        quote_if_needed(identifier)
    }

    fn render_relation(&self, relation: &RelationName) -> String {
        render_tripline_relation(relation)
    }

    async fn execute(&self, sql: &str, fetch: bool) -> Result<QueryResult, AdapterError> {
        // Run the statement on a blocking thread that waits for it: the warehouse's futures need not be `Send`.
        let warehouse = self.warehouse.clone();
        let statement = sql.to_string();
        let handle = tokio::runtime::Handle::current();
        let result = tokio::task::spawn_blocking(move || {
            handle.block_on(warehouse.execute(&statement, RunMode::Run))
        })
        .await
        .map_err(|e| {
            AdapterError::external(format!(
                "internal: a warehouse statement failed to run: {e}"
            ))
        })?
        .map_err(adapter_error)?;
        let rows = result
            .rows_affected
            .or_else(|| (result.kind == "query").then(|| result.row_count() as u64));
        Ok(QueryResult {
            columns: result
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            rows: if fetch {
                batches_to_rows(&result.batches)
            } else {
                Vec::new()
            },
            rows_affected: rows,
            message: status_message(sql, rows),
        })
    }

    async fn get_relation(
        &self,
        relation: &RelationName,
    ) -> Result<Option<ExistingRelation>, AdapterError> {
        let sql = format!("SHOW TABLES IN {}", quote_if_needed(&relation.schema));
        let result = self.execute(&sql, true).await?;
        let col = |name: &str| result.columns.iter().position(|c| c == name);
        let (Some(t), Some(k)) = (col("table"), col("type")) else {
            return Err(AdapterError::external(
                "SHOW TABLES returned no `table`/`type` columns",
            ));
        };
        Ok(result.rows.iter().find_map(|row| {
            let name = row.get(t)?.as_str()?;
            (name == relation.identifier).then(|| ExistingRelation {
                name: RelationName::new(None, relation.schema.clone(), name),
                kind: match row.get(k).and_then(|v| v.as_str()) {
                    Some("VIEW") => RelationKind::View,
                    Some("DELTA") => RelationKind::Table,
                    _ => RelationKind::External,
                },
            })
        }))
    }

    async fn get_columns(&self, relation: &RelationName) -> Result<Vec<ColumnInfo>, AdapterError> {
        let sql = format!("DESCRIBE {}", render_tripline_relation(relation));
        let result = self.execute(&sql, true).await?;
        Ok(result
            .rows
            .iter()
            .map(|row| {
                ColumnInfo::new(
                    row[0].as_str().unwrap_or_default(),
                    row[1].as_str().unwrap_or_default(),
                )
            })
            .collect())
    }
}

#[async_trait]
impl RunAdapter for WarehouseAdapter {
    fn dialect(&self) -> Dialect {
        Dialect::Tripline
    }

    async fn execute_batch(&self, statements: &[String]) -> Result<Vec<QueryResult>, AdapterError> {
        let mut out = Vec::new();
        for sql in statements {
            out.push(self.execute(sql, false).await?);
        }
        Ok(out)
    }

    async fn create_schema(&self, _relation: &RelationName) -> Result<(), AdapterError> {
        // A dataset is a folder, made by the first table written into it.
        Ok(())
    }

    fn keep(&self, relation: &RelationName) {
        self.warehouse
            .keep_view_result(&format!("{}.{}", relation.schema, relation.identifier));
    }

    fn release(&self, relation: &RelationName) {
        self.warehouse
            .forget_view_result(&format!("{}.{}", relation.schema, relation.identifier));
    }

    fn as_adapter(self: Arc<Self>) -> Arc<dyn Adapter> {
        self
    }
}
