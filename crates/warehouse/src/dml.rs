//! Changing the rows of warehouse tables: `INSERT`, `DELETE`, `UPDATE` and `MERGE`, each one Delta commit.
//!
//! Statements are parsed with DataFusion's SQL parser and carried out by delta-rs's operations (write, delete,
//! update, merge), which rewrite only the files holding affected rows and commit atomically: a crash before the
//! commit leaves the previous version as it was. The warehouse keeps its own layout invariants on top: the `DATE`
//! partition column derived by `PARTITION BY DATE(col)` follows `col` through inserts, updates and merges, and rows
//! inserted into a clustered table are written sorted by the cluster columns.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{SortExpr, cast, lit};
use datafusion::prelude::col;
use datafusion::sql::sqlparser::ast;
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;

use crate::catalog::TableLayout;
use crate::scan::{self, ScanReport};
use crate::statement::TableName;
use crate::{Result, RunMode, StatementResult, Warehouse, WarehouseError, empty_result};

fn unsupported(what: impl Into<String>) -> WarehouseError {
    WarehouseError::NotSupported(what.into())
}

fn ddl(message: impl Into<String>) -> WarehouseError {
    WarehouseError::Ddl(message.into())
}

/// `dataset.table` from a parsed name (`project.dataset.table` keeps the last two parts).
pub(crate) fn table_name_of(name: &ast::ObjectName) -> Result<TableName> {
    let mut parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(ident) => Ok(ident.value.clone()),
            other => Err(unsupported(format!("the table name {other}"))),
        })
        .collect::<Result<_>>()?;
    if parts.len() == 1 && parts[0].contains('.') {
        parts = parts[0].split('.').map(str::to_string).collect();
    }
    let n = parts.len();
    if !(2..=3).contains(&n) {
        return Err(ddl(format!("table name '{name}' must be dataset.table")));
    }
    Ok(TableName {
        dataset: parts[n - 2].clone(),
        table: parts[n - 1].clone(),
    })
}

/// The column an assignment or insert list names (the last part of `alias.col`).
fn column_of(name: &ast::ObjectName) -> Result<String> {
    match name.0.last() {
        Some(ast::ObjectNamePart::Identifier(ident)) => Ok(ident.value.clone()),
        _ => Err(unsupported(format!("the column name {name}"))),
    }
}

fn assignment_column(a: &ast::Assignment) -> Result<String> {
    match &a.target {
        ast::AssignmentTarget::ColumnName(name) => column_of(name),
        ast::AssignmentTarget::Tuple(_) => Err(unsupported(format!(
            "tuple assignment {a}: assign one column at a time"
        ))),
    }
}

/// A Delta table opened for a write, with what the warehouse knows about its layout.
struct Target {
    name: TableName,
    table: DeltaTable,
    layout: TableLayout,
    schema: SchemaRef,
}

impl Target {
    fn has_column(&self, column: &str) -> bool {
        self.schema.field_with_name(column).is_ok()
    }

    fn columns(&self) -> String {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn check_column(&self, column: &str, statement: &str) -> Result<()> {
        if self.has_column(column) {
            Ok(())
        } else {
            Err(ddl(format!(
                "{statement} {}: unknown column '{column}' (the table has: {})",
                self.name,
                self.columns()
            )))
        }
    }

    /// `(source column, partition column)` when the partition column is derived as `DATE(source)`.
    fn derived_partition(&self) -> Option<(String, String)> {
        self.layout.derived_partition()
    }

    /// Refuse a direct write of the derived partition column: it follows its source column.
    fn check_not_derived(&self, column: &str, statement: &str) -> Result<()> {
        match self.derived_partition() {
            Some((source, partition)) if partition == column => Err(ddl(format!(
                "{statement} {}: {partition} is the partition column derived from DATE({source}); set {source} \
                 and the partition follows",
                self.name
            ))),
            _ => Ok(()),
        }
    }

    fn version(&self) -> u64 {
        self.table.version().unwrap_or_default()
    }
}

impl Warehouse {
    /// The session delta-rs operations plan with: the warehouse's own, so `DATE()` and column case behave as in
    /// queries.
    fn op_session(&self) -> Arc<dyn Session> {
        Arc::new(self.ctx.state())
    }

    async fn writable(&self, name: &TableName) -> Result<Target> {
        let Some(info) = self.table_info(name).await? else {
            return Err(WarehouseError::NotFound(name.to_string()));
        };
        match info.kind {
            crate::TableKind::Delta => {}
            crate::TableKind::External => return Err(WarehouseError::ReadOnly(name.to_string())),
            crate::TableKind::View => {
                return Err(unsupported(format!(
                    "writing to view {name}: a view is a stored query; write to the tables it reads"
                )));
            }
        }
        let table = self.open_delta(name).await?;
        let schema = self
            .ctx
            .table_provider(crate::catalog::table_ref(name))
            .await
            .map_err(WarehouseError::query)?
            .schema();
        Ok(Target {
            name: name.clone(),
            table,
            layout: self.layout(name).await,
            schema,
        })
    }

    /// The files a write would read, from the plan of `SELECT * FROM t [WHERE predicate]`.
    async fn planned_scan(&self, name: &TableName, predicate: Option<&str>) -> Result<ScanReport> {
        let sql = match predicate {
            Some(p) => format!("SELECT * FROM {name} WHERE {p}"),
            None => format!("SELECT * FROM {name}"),
        };
        let plan = self
            .ctx
            .sql(&sql)
            .await
            .map_err(WarehouseError::query)?
            .create_physical_plan()
            .await
            .map_err(WarehouseError::query)?;
        Ok(scan::planned_files(&plan).report())
    }

    async fn committed(&self, target: &Target, table: &DeltaTable) -> Result<u64> {
        self.register_delta_table(&target.name, table).await?;
        Ok(table.version().unwrap_or_default())
    }

    fn delta_error(name: &TableName) -> impl Fn(deltalake::DeltaTableError) -> WarehouseError {
        let table = name.to_string();
        move |source| WarehouseError::Delta {
            table: table.clone(),
            source,
        }
    }

    /// `INSERT INTO ds.t [(columns)] SELECT ... | VALUES ...`: one append commit.
    pub(crate) async fn insert(
        &self,
        insert: &ast::Insert,
        mode: RunMode,
    ) -> Result<StatementResult> {
        let ast::TableObject::TableName(object) = &insert.table else {
            return Err(unsupported("INSERT INTO a table function"));
        };
        let name = table_name_of(object)?;
        if insert.overwrite {
            return Err(unsupported(
                "INSERT OVERWRITE (use CREATE OR REPLACE TABLE ... AS SELECT)",
            ));
        }
        if insert.on.is_some() || insert.returning.is_some() || insert.partitioned.is_some() {
            return Err(unsupported(
                "INSERT with ON CONFLICT, RETURNING or PARTITION: use MERGE for upserts",
            ));
        }
        let Some(source) = &insert.source else {
            return Err(unsupported("INSERT without a query or VALUES"));
        };
        let target = self.writable(&name).await?;
        let derived = target.derived_partition();
        let listed: Vec<String> = if insert.columns.is_empty() {
            target
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|c| derived.as_ref().is_none_or(|(_, p)| p != c))
                .collect()
        } else {
            insert
                .columns
                .iter()
                .map(column_of)
                .collect::<Result<Vec<_>>>()?
        };
        for c in &listed {
            target.check_column(c, "INSERT INTO")?;
            target.check_not_derived(c, "INSERT INTO")?;
        }
        let df = self
            .ctx
            .sql_with_options(&source.to_string(), SQLOptions::new().with_allow_ddl(false))
            .await
            .map_err(WarehouseError::query)?;
        let given = df.schema().fields().len();
        if given != listed.len() {
            return Err(ddl(format!(
                "INSERT INTO {name}: the query returns {given} columns but {} are inserted ({})",
                listed.len(),
                listed.join(", ")
            )));
        }
        // Values go to the listed columns by position, cast to the table's types; columns not listed are NULL,
        // and the derived partition column is computed from its source column.
        let source_fields: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let by_target = |column: &str| {
            listed.iter().position(|c| c == column).map(|i| {
                col(datafusion::common::Column::new_unqualified(
                    &source_fields[i],
                ))
            })
        };
        let mut exprs = Vec::new();
        for field in target.schema.fields() {
            let value = if let Some(e) = by_target(field.name()) {
                e
            } else if let Some((source, partition)) = &derived
                && partition == field.name()
            {
                by_target(source).unwrap_or_else(|| lit(datafusion::scalar::ScalarValue::Null))
            } else {
                if !field.is_nullable() {
                    return Err(ddl(format!(
                        "INSERT INTO {name}: column {} is NOT NULL and has no value",
                        field.name()
                    )));
                }
                lit(datafusion::scalar::ScalarValue::Null)
            };
            exprs.push(cast(value, field.data_type().clone()).alias(field.name()));
        }
        let mut df = df.select(exprs).map_err(WarehouseError::query)?;
        let order = target.layout.sort_columns();
        if !order.is_empty() {
            df = df
                .sort(
                    order
                        .iter()
                        .map(|c| {
                            SortExpr::new(
                                col(datafusion::common::Column::new_unqualified(c)),
                                true,
                                true,
                            )
                        })
                        .collect(),
                )
                .map_err(WarehouseError::query)?;
        }
        let plan = df
            .clone()
            .create_physical_plan()
            .await
            .map_err(WarehouseError::query)?;
        let mut report = scan::planned_files(&plan).report();
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "insert",
                report,
                format!("would insert into {name}"),
            ));
        }
        let batches = datafusion::physical_plan::collect(plan.clone(), self.ctx.task_ctx())
            .await
            .map_err(WarehouseError::query)?;
        report.bytes_scanned = scan::bytes_scanned(&plan);
        report.estimated = false;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let version_before = target.version();
        let table = if rows == 0 {
            target.table.clone()
        } else {
            target
                .table
                .clone()
                .write(batches)
                .with_save_mode(SaveMode::Append)
                .with_partition_columns(target.layout.partition_column.clone())
                .with_writer_properties(target.layout.writer_properties())
                .with_session_state(self.op_session())
                .await
                .map_err(Self::delta_error(&name))?
        };
        let version = self.committed(&target, &table).await?;
        let message = if rows == 0 {
            format!("inserted 0 rows into {name}; nothing changed (Delta version {version_before})")
        } else {
            format!("inserted {rows} rows into {name} (Delta version {version})")
        };
        let mut out = empty_result("insert", report, message);
        out.rows_affected = Some(rows as u64);
        Ok(out)
    }

    /// `DELETE FROM ds.t [WHERE ...]`: files holding matching rows are rewritten without them, in one commit.
    pub(crate) async fn delete(
        &self,
        delete: &ast::Delete,
        mode: RunMode,
    ) -> Result<StatementResult> {
        let tables = match &delete.from {
            ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
        };
        let [from] = tables.as_slice() else {
            return Err(unsupported("DELETE from several tables"));
        };
        if !from.joins.is_empty()
            || delete.using.is_some()
            || delete.returning.is_some()
            || delete.limit.is_some()
            || !delete.order_by.is_empty()
            || !delete.tables.is_empty()
        {
            return Err(unsupported(
                "DELETE with USING, joins, RETURNING, ORDER BY or LIMIT (use a subquery-free WHERE, or MERGE ... \
                 WHEN MATCHED THEN DELETE)",
            ));
        }
        let ast::TableFactor::Table {
            name: object,
            alias,
            ..
        } = &from.relation
        else {
            return Err(unsupported(format!("DELETE FROM {}", from.relation)));
        };
        if alias.is_some() {
            return Err(unsupported(
                "a table alias in DELETE (name columns without a qualifier)",
            ));
        }
        let name = table_name_of(object)?;
        let target = self.writable(&name).await?;
        let predicate = delete.selection.as_ref().map(ToString::to_string);
        let report = self.planned_scan(&name, predicate.as_deref()).await?;
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "delete",
                report,
                format!("would delete from {name}"),
            ));
        }
        let mut builder = target
            .table
            .clone()
            .delete()
            .with_session_state(self.op_session())
            .with_writer_properties(target.layout.writer_properties());
        if let Some(p) = &predicate {
            builder = builder.with_predicate(p.as_str());
        }
        let (table, metrics) = builder.await.map_err(Self::delta_error(&name))?;
        let version = self.committed(&target, &table).await?;
        let deleted = metrics.num_deleted_rows.unwrap_or(0);
        let mut out = empty_result(
            "delete",
            report,
            if version == target.version() {
                format!("deleted 0 rows from {name}; nothing changed (Delta version {version})")
            } else {
                format!(
                    "deleted {deleted} rows from {name}: {} files rewritten (Delta version {version})",
                    metrics.num_removed_files
                )
            },
        );
        out.rows_affected = Some(deleted as u64);
        Ok(out)
    }

    /// `UPDATE ds.t SET c = expr, ... [WHERE ...]`: one commit rewriting the files holding matching rows.
    pub(crate) async fn update(
        &self,
        update: &ast::Update,
        mode: RunMode,
    ) -> Result<StatementResult> {
        if update.from.is_some() || update.returning.is_some() || update.limit.is_some() {
            return Err(unsupported(
                "UPDATE ... FROM, RETURNING or LIMIT (use MERGE INTO ... USING ... WHEN MATCHED THEN UPDATE)",
            ));
        }
        if !update.table.joins.is_empty() {
            return Err(unsupported("UPDATE of a join"));
        }
        let ast::TableFactor::Table {
            name: object,
            alias,
            ..
        } = &update.table.relation
        else {
            return Err(unsupported(format!("UPDATE {}", update.table.relation)));
        };
        if alias.is_some() {
            return Err(unsupported(
                "a table alias in UPDATE (name columns without a qualifier)",
            ));
        }
        let name = table_name_of(object)?;
        let target = self.writable(&name).await?;
        let assignments = self.assignments(&target, &update.assignments, "UPDATE")?;
        let predicate = update.selection.as_ref().map(ToString::to_string);
        let report = self.planned_scan(&name, predicate.as_deref()).await?;
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "update",
                report,
                format!("would update {name}"),
            ));
        }
        let mut builder = target
            .table
            .clone()
            .update()
            .with_session_state(self.op_session())
            .with_writer_properties(target.layout.writer_properties());
        if let Some(p) = &predicate {
            builder = builder.with_predicate(p.as_str());
        }
        for (column, value) in assignments {
            builder = builder.with_update(column, value);
        }
        let (table, metrics) = builder.await.map_err(Self::delta_error(&name))?;
        let version = self.committed(&target, &table).await?;
        let mut out = empty_result(
            "update",
            report,
            format!(
                "updated {} rows of {name}: {} files rewritten (Delta version {version})",
                metrics.num_updated_rows, metrics.num_removed_files
            ),
        );
        out.rows_affected = Some(metrics.num_updated_rows as u64);
        Ok(out)
    }

    /// `SET` assignments as `(column, SQL expression)`, checked against the table, with the derived partition
    /// column following its source column.
    fn assignments(
        &self,
        target: &Target,
        assignments: &[ast::Assignment],
        statement: &str,
    ) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for a in assignments {
            let column = assignment_column(a)?;
            target.check_column(&column, statement)?;
            target.check_not_derived(&column, statement)?;
            if out.iter().any(|(c, _)| c == &column) {
                return Err(ddl(format!(
                    "{statement} {}: column {column} is assigned twice",
                    target.name
                )));
            }
            out.push((column, a.value.to_string()));
        }
        if let Some((source, partition)) = target.derived_partition()
            && let Some((_, value)) = out.iter().find(|(c, _)| c == &source)
        {
            let value = format!("CAST({value} AS DATE)");
            out.push((partition, value));
        }
        Ok(out)
    }

    /// `MERGE INTO ds.t [AS t] USING source [AS s] ON ... WHEN [NOT] MATCHED [BY SOURCE|TARGET] [AND ...] THEN
    /// UPDATE SET ... | DELETE | INSERT (...) VALUES (...) | INSERT ROW`: one commit.
    pub(crate) async fn merge(&self, merge: &ast::Merge, mode: RunMode) -> Result<StatementResult> {
        if merge.output.is_some() {
            return Err(unsupported("MERGE ... OUTPUT"));
        }
        let ast::TableFactor::Table {
            name: object,
            alias: target_alias,
            ..
        } = &merge.table
        else {
            return Err(unsupported(format!("MERGE INTO {}", merge.table)));
        };
        let name = table_name_of(object)?;
        let target = self.writable(&name).await?;
        let target_alias = target_alias
            .as_ref()
            .map(|a| a.name.value.clone())
            .unwrap_or_else(|| name.table.clone());
        let (source, source_alias): (DataFrame, String) = match &merge.source {
            ast::TableFactor::Table {
                name: source_name,
                alias,
                ..
            } => {
                let df = self
                    .ctx
                    .sql(&format!("SELECT * FROM {source_name}"))
                    .await
                    .map_err(WarehouseError::query)?;
                let alias = alias
                    .as_ref()
                    .map(|a| a.name.value.clone())
                    .or_else(|| column_of(source_name).ok())
                    .unwrap_or_else(|| "source".into());
                (df, alias)
            }
            ast::TableFactor::Derived {
                subquery, alias, ..
            } => {
                let df = self
                    .ctx
                    .sql_with_options(
                        &subquery.to_string(),
                        SQLOptions::new().with_allow_ddl(false),
                    )
                    .await
                    .map_err(WarehouseError::query)?;
                let alias = alias
                    .as_ref()
                    .map(|a| a.name.value.clone())
                    .ok_or_else(|| {
                        ddl(format!(
                            "MERGE INTO {name} USING (subquery): give the subquery an alias, e.g. USING (...) AS s"
                        ))
                    })?;
                (df, alias)
            }
            other => return Err(unsupported(format!("MERGE ... USING {other}"))),
        };
        if source_alias.eq_ignore_ascii_case(&target_alias) {
            return Err(ddl(format!(
                "MERGE INTO {name}: the target and the source are both called {target_alias}; give one an alias"
            )));
        }
        let source_columns: Vec<String> = source
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let report = {
            let plan = source
                .clone()
                .create_physical_plan()
                .await
                .map_err(WarehouseError::query)?;
            let mut report = scan::planned_files(&plan).report();
            let target_scan = self.planned_scan(&name, None).await?;
            report.bytes_scanned += target_scan.bytes_scanned;
            report.files_read += target_scan.files_read;
            report
        };
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "merge",
                report,
                format!("would merge into {name}"),
            ));
        }
        let mut builder = target
            .table
            .clone()
            .merge(source, merge.on.to_string())
            .with_source_alias(&source_alias)
            .with_target_alias(&target_alias)
            .with_session_state(self.op_session())
            .with_writer_properties(target.layout.writer_properties());
        let delta_err = Self::delta_error(&name);
        for clause in &merge.clauses {
            let predicate = clause.predicate.as_ref().map(ToString::to_string);
            let matched = matches!(clause.clause_kind, ast::MergeClauseKind::Matched);
            let by_source = matches!(clause.clause_kind, ast::MergeClauseKind::NotMatchedBySource);
            builder = match &clause.action {
                ast::MergeAction::Update(update) => {
                    if update.update_predicate.is_some() || update.delete_predicate.is_some() {
                        return Err(unsupported(
                            "UPDATE SET ... WHERE / DELETE WHERE inside MERGE (put the condition in WHEN ... AND)",
                        ));
                    }
                    if !(matched || by_source) {
                        return Err(ddl(format!("MERGE INTO {name}: WHEN NOT MATCHED cannot UPDATE")));
                    }
                    let sets = self.assignments(&target, &update.assignments, "MERGE INTO")?;
                    let apply = |mut b: deltalake::operations::merge::UpdateBuilder| {
                        if let Some(p) = &predicate {
                            b = b.predicate(p.as_str());
                        }
                        for (column, value) in &sets {
                            b = b.update(column.as_str(), value.as_str());
                        }
                        b
                    };
                    if matched {
                        builder.when_matched_update(apply)
                    } else {
                        builder.when_not_matched_by_source_update(apply)
                    }
                }
                ast::MergeAction::Delete { .. } => {
                    if !(matched || by_source) {
                        return Err(ddl(format!("MERGE INTO {name}: WHEN NOT MATCHED cannot DELETE")));
                    }
                    let apply = |mut b: deltalake::operations::merge::DeleteBuilder| {
                        if let Some(p) = &predicate {
                            b = b.predicate(p.as_str());
                        }
                        b
                    };
                    if matched {
                        builder.when_matched_delete(apply)
                    } else {
                        builder.when_not_matched_by_source_delete(apply)
                    }
                }
                ast::MergeAction::Insert(insert) => {
                    if matched || by_source {
                        return Err(ddl(format!(
                            "MERGE INTO {name}: only WHEN NOT MATCHED [BY TARGET] can INSERT"
                        )));
                    }
                    if insert.insert_predicate.is_some() {
                        return Err(unsupported("INSERT ... WHERE inside MERGE (use WHEN NOT MATCHED AND ...)"));
                    }
                    let sets = self.merge_insert_values(
                        &target,
                        insert,
                        &source_alias,
                        &source_columns,
                    )?;
                    builder.when_not_matched_insert(|mut b| {
                        if let Some(p) = &predicate {
                            b = b.predicate(p.as_str());
                        }
                        for (column, value) in &sets {
                            b = b.set(column.as_str(), value.as_str());
                        }
                        b
                    })
                }
            }
            .map_err(&delta_err)?;
        }
        let (table, metrics) = builder.await.map_err(&delta_err)?;
        let version = self.committed(&target, &table).await?;
        let affected = metrics.num_target_rows_inserted
            + metrics.num_target_rows_updated
            + metrics.num_target_rows_deleted;
        let mut out = empty_result(
            "merge",
            report,
            format!(
                "merged {} source rows into {name}: {} inserted, {} updated, {} deleted (Delta version {version})",
                metrics.num_source_rows,
                metrics.num_target_rows_inserted,
                metrics.num_target_rows_updated,
                metrics.num_target_rows_deleted
            ),
        );
        out.rows_affected = Some(affected as u64);
        Ok(out)
    }

    /// The `(column, value)` pairs of a MERGE `INSERT`: an explicit column list with VALUES, or `INSERT ROW`
    /// (every target column from the source column of the same name).
    fn merge_insert_values(
        &self,
        target: &Target,
        insert: &ast::MergeInsertExpr,
        source_alias: &str,
        source_columns: &[String],
    ) -> Result<Vec<(String, String)>> {
        let name = &target.name;
        let derived = target.derived_partition();
        let quoted = |c: &str| format!("{source_alias}.\"{}\"", c.replace('"', "\"\""));
        let mut sets: Vec<(String, String)> = Vec::new();
        match &insert.kind {
            ast::MergeInsertKind::Row => {
                if !insert.columns.is_empty() {
                    return Err(unsupported("INSERT (columns) ROW"));
                }
                for field in target.schema.fields() {
                    let c = field.name();
                    if derived.as_ref().is_some_and(|(_, p)| p == c) {
                        continue;
                    }
                    if source_columns.iter().any(|s| s == c) {
                        sets.push((c.clone(), quoted(c)));
                    } else if !field.is_nullable() {
                        return Err(ddl(format!(
                            "MERGE INTO {name} ... INSERT ROW: the source has no column {c}, which is NOT NULL"
                        )));
                    }
                }
                if sets.is_empty() {
                    return Err(ddl(format!(
                        "MERGE INTO {name} ... INSERT ROW: the source shares no column with the table"
                    )));
                }
            }
            ast::MergeInsertKind::Values(values) => {
                let [row] = values.rows.as_slice() else {
                    return Err(ddl(format!(
                        "MERGE INTO {name} ... INSERT: VALUES takes exactly one row"
                    )));
                };
                let columns: Vec<String> = if insert.columns.is_empty() {
                    target
                        .schema
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .filter(|c| derived.as_ref().is_none_or(|(_, p)| p != c))
                        .collect()
                } else {
                    insert
                        .columns
                        .iter()
                        .map(column_of)
                        .collect::<Result<_>>()?
                };
                let row = &row.content;
                if columns.len() != row.len() {
                    return Err(ddl(format!(
                        "MERGE INTO {name} ... INSERT: {} columns but {} values",
                        columns.len(),
                        row.len()
                    )));
                }
                for (c, v) in columns.into_iter().zip(row) {
                    target.check_column(&c, "MERGE INTO")?;
                    target.check_not_derived(&c, "MERGE INTO")?;
                    sets.push((c, v.to_string()));
                }
            }
        }
        if let Some((source, partition)) = derived
            && let Some((_, value)) = sets.iter().find(|(c, _)| c == &source)
        {
            let value = format!("CAST({value} AS DATE)");
            sets.push((partition, value));
        }
        Ok(sets)
    }
}
