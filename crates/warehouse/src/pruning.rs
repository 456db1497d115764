//! Partition pruning for the way people write date filters. A table made with `PARTITION BY DATE(col)` stores
//! `DATE(col)` as its partition column `<col>_date`, so a filter on `DATE(col)` (or `CAST(col AS DATE)`), as the
//! course writes it (`WHERE DATE(tpep_pickup_datetime) BETWEEN '2019-06-01' AND '2019-06-30'`), is rewritten to the
//! partition column: the same rows, and only the matching days' files are read, as in BigQuery.

use std::collections::HashMap;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, TableReference};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{Expr, LogicalPlan};

/// `dataset.table` -> (source column, partition column) for every table partitioned by `DATE(col)`.
pub(crate) type DerivedPartitions = HashMap<String, (String, String)>;

/// Rewrite `DATE(col)` in filters over date-partitioned tables to their partition column.
pub(crate) fn rewrite(plan: LogicalPlan, tables: &DerivedPartitions) -> Result<LogicalPlan> {
    if tables.is_empty() {
        return Ok(plan);
    }
    plan.transform_up(|node| {
        let LogicalPlan::Filter(_) = &node else {
            return Ok(Transformed::no(node));
        };
        let input = node.inputs()[0].clone();
        node.map_expressions(|predicate| {
            predicate.transform(|e| {
                let column = match &e {
                    Expr::ScalarFunction(ScalarFunction { func, args })
                        if func.name().eq_ignore_ascii_case("date") && args.len() == 1 =>
                    {
                        args[0].clone()
                    }
                    Expr::Cast(Cast { expr, field }) if *field.data_type() == DataType::Date32 => {
                        expr.as_ref().clone()
                    }
                    _ => return Ok(Transformed::no(e)),
                };
                let Expr::Column(Column {
                    relation: Some(qualifier),
                    name,
                    ..
                }) = &column
                else {
                    return Ok(Transformed::no(e));
                };
                let Some(table) = source_table(&input, qualifier) else {
                    return Ok(Transformed::no(e));
                };
                match tables.get(&table.to_string()) {
                    Some((source, partition)) if source == name => Ok(Transformed::yes(
                        Expr::Column(Column::new(Some(qualifier.clone()), partition)),
                    )),
                    _ => Ok(Transformed::no(e)),
                }
            })
        })
    })
    .map(|t| t.data)
}

/// The table a column qualifier names in `plan`: a scan of that table, or an alias directly over one.
fn source_table(plan: &LogicalPlan, qualifier: &TableReference) -> Option<TableReference> {
    match plan {
        LogicalPlan::TableScan(scan) if &scan.table_name == qualifier => {
            Some(scan.table_name.clone())
        }
        LogicalPlan::SubqueryAlias(alias) if &alias.alias == qualifier => {
            match alias.input.as_ref() {
                LogicalPlan::TableScan(scan) => Some(scan.table_name.clone()),
                _ => None,
            }
        }
        // An alias hides what is under it.
        LogicalPlan::SubqueryAlias(_) => None,
        other => other
            .inputs()
            .into_iter()
            .find_map(|input| source_table(input, qualifier)),
    }
}
