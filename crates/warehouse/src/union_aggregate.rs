//! Aggregation over a labelled `UNION ALL`, one branch at a time.
//!
//! The course's fact table is `SELECT 'Green' AS service_type, ... FROM green UNION ALL SELECT 'Yellow', ... FROM
//! yellow`, and its reports group by `service_type` first. DataFusion hashes that string for each of the tens of
//! millions of rows and compares it on every probe, which costs more than the rest of the aggregation. But when a
//! group key is a column that each branch sets to its own distinct constant, no group can take rows from two
//! branches, so
//!
//! ```text
//! Aggregate(keys: label, k..; aggs)          Union
//!   Union                               =>     Projection('Green' AS label, k.., aggs)
//!     Projection('Green' AS label, ..)           Aggregate(keys: k..; aggs)
//!     Projection('Yellow' AS label, ..)            Projection('Green' AS label, ..)
//!                                              Projection('Yellow' AS label, k.., aggs)
//!                                                Aggregate(keys: k..; aggs) ...
//! ```
//!
//! for any aggregate functions: each group is aggregated over exactly the rows it had before. The label is added
//! back after aggregating. When the label is the only key, it stays the branch's key (an aggregate without keys
//! would return a row even for an empty branch). Grouping sets are left alone (a rollup that drops the label merges
//! branches).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, Projection, SubqueryAlias, Union, expr::Alias,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct UnionAggregate;

impl OptimizerRule for UnionAggregate {
    fn name(&self) -> &str {
        "tripline_union_aggregate"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        crate::rule::on_aggregate(plan, split)
    }
}

/// The union under `aggregate` (directly or under a subquery alias).
fn union_input(aggregate: &Aggregate) -> Option<&Union> {
    match aggregate.input.as_ref() {
        LogicalPlan::Union(u) => Some(u),
        LogicalPlan::SubqueryAlias(SubqueryAlias { input, .. }) => match input.as_ref() {
            LogicalPlan::Union(u) => Some(u),
            _ => None,
        },
        _ => None,
    }
}

/// The constant that `branch` (a projection) gives its output column `i`, if it is a non-null literal.
fn branch_constant(branch: &LogicalPlan, i: usize) -> Option<&ScalarValue> {
    let LogicalPlan::Projection(Projection { expr, .. }) = branch else {
        return None;
    };
    let mut e = expr.get(i)?;
    while let Expr::Alias(Alias { expr: inner, .. }) = e {
        e = inner;
    }
    match e {
        Expr::Literal(v, _) if !v.is_null() => Some(v),
        _ => None,
    }
}

/// The position in `input` of a group key that every branch sets to its own distinct constant: the label.
fn label_key(aggregate: &Aggregate, union: &Union) -> Option<(usize, usize)> {
    let input = aggregate.input.schema();
    aggregate
        .group_expr
        .iter()
        .enumerate()
        .find_map(|(key, e)| {
            let Expr::Column(c) = e else { return None };
            let i = input.index_of_column(c).ok()?;
            let labels: Vec<&ScalarValue> = union
                .inputs
                .iter()
                .map(|b| branch_constant(b, i))
                .collect::<Option<_>>()?;
            let distinct = labels
                .iter()
                .enumerate()
                .all(|(n, a)| labels[..n].iter().all(|b| a != b));
            distinct.then_some((key, i))
        })
}

/// `e` with the aggregate input's columns replaced by the same position's columns of `branch`.
fn to_branch(e: &Expr, input: &DFSchema, branch: &DFSchema) -> Result<Expr> {
    e.clone()
        .transform_up(|e| match &e {
            Expr::Column(c) => {
                let i = input.index_of_column(c)?;
                Ok(Transformed::yes(Expr::Column(Column::from(
                    branch.qualified_field(i),
                ))))
            }
            _ => Ok(Transformed::no(e)),
        })
        .map(|t| t.data)
}

/// The aggregate split over its union's branches, or `None` when it does not apply.
fn split(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    if aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
        || aggregate
            .group_expr
            .iter()
            .chain(&aggregate.aggr_expr)
            .any(|e| e.contains_outer() || has_subquery(e))
    {
        return Ok(None);
    }
    let Some(union) = union_input(aggregate) else {
        return Ok(None);
    };
    let Some((label_pos, label_col)) = label_key(aggregate, union) else {
        return Ok(None);
    };
    let input = aggregate.input.schema();
    let out = aggregate.schema.as_ref();
    let keep_label = aggregate.group_expr.len() == 1;
    let mut branches = Vec::with_capacity(union.inputs.len());
    for branch in &union.inputs {
        let bschema = branch.schema();
        let group_expr = aggregate
            .group_expr
            .iter()
            .enumerate()
            .filter(|(k, _)| keep_label || *k != label_pos)
            .map(|(_, e)| to_branch(e, input, bschema))
            .collect::<Result<Vec<_>>>()?;
        let aggr_expr = aggregate
            .aggr_expr
            .iter()
            .map(|e| to_branch(e, input, bschema))
            .collect::<Result<Vec<_>>>()?;
        let agg = Aggregate::try_new(Arc::clone(branch), group_expr, aggr_expr)?;
        let agg_schema = Arc::clone(&agg.schema);
        let agg = Arc::new(LogicalPlan::Aggregate(agg));
        // The branch's rows in the original aggregate's output order, with its names.
        let label = branch_constant(branch, label_col)
            .expect("checked by label_key")
            .clone();
        let mut exprs = Vec::with_capacity(out.fields().len());
        let mut from = 0;
        for (k, (qualifier, field)) in out.iter().enumerate() {
            let e = if k == label_pos && !keep_label {
                Expr::Literal(label.clone(), None)
            } else {
                let c = Expr::Column(Column::from(agg_schema.qualified_field(from)));
                from += 1;
                c
            };
            exprs.push(e.alias_qualified(qualifier.cloned(), field.name()));
        }
        branches.push(Arc::new(LogicalPlan::Projection(Projection::try_new(
            exprs, agg,
        )?)));
    }
    let Ok(union) = Union::try_new(branches) else {
        // The branches' aggregates disagree on a type: keep the plan as it was.
        return Ok(None);
    };
    let union = Arc::new(LogicalPlan::Union(union));
    // The union takes its first branch's names and qualifiers; restate the original ones for the plan above.
    let exprs = out
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            Expr::Column(Column::from(union.schema().qualified_field(i)))
                .alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    let plan = LogicalPlan::Projection(Projection::try_new(exprs, union)?);
    if plan.schema().has_equivalent_names_and_types(out).is_err() {
        return Ok(None);
    }
    Ok(Some(plan))
}

/// Whether `e` holds a subquery (left alone: its correlation is to the original input).
fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        ))
    })
    .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int32Array, RecordBatch};
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    async fn optimized(sql: &str) -> String {
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_optimizer_rule(Arc::new(UnionAggregate))
            .build();
        let ctx = SessionContext::new_with_state(state);
        for name in ["green", "yellow"] {
            let batch = RecordBatch::try_from_iter([
                ("zone", Arc::new(Int32Array::from(vec![1, 2, 2])) as _),
                (
                    "amount",
                    Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as _,
                ),
            ])
            .unwrap();
            ctx.register_batch(name, batch).unwrap();
        }
        let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
        plan.display_indent().to_string()
    }

    /// The plan's lines from the first aggregate down, with their indentation.
    fn from_first_aggregate(plan: &str) -> Vec<&str> {
        plan.lines()
            .skip_while(|l| !l.trim_start().starts_with("Aggregate"))
            .collect()
    }

    #[tokio::test]
    async fn a_labelled_union_is_aggregated_per_branch() {
        let plan = optimized(
            "SELECT s, zone, sum(amount) FROM (SELECT 'G' AS s, zone, amount FROM green \
             UNION ALL SELECT 'Y', zone, amount FROM yellow) t GROUP BY s, zone",
        )
        .await;
        let union_at = plan.lines().position(|l| l.trim_start() == "Union");
        let aggregates: Vec<usize> = plan
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().starts_with("Aggregate"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(aggregates.len(), 2, "{plan}");
        assert!(
            union_at.is_some_and(|u| aggregates.iter().all(|a| *a > u)),
            "{plan}"
        );
        // Each branch groups by the zone only.
        for line in plan.lines().filter(|l| l.contains("Aggregate:")) {
            assert!(
                line.contains("groupBy=[[green.zone]]") || line.contains("groupBy=[[yellow.zone]]"),
                "{plan}"
            );
        }
    }

    #[tokio::test]
    async fn branches_sharing_a_label_are_aggregated_together() {
        let plan = optimized(
            "SELECT s, zone, count(*) FROM (SELECT 'G' AS s, zone FROM green \
             UNION ALL SELECT 'G', zone FROM yellow) t GROUP BY s, zone",
        )
        .await;
        let below = from_first_aggregate(&plan);
        assert!(below.iter().any(|l| l.trim_start() == "Union"), "{plan}");
        // A key computed from a column is no label either.
        let plan = optimized(
            "SELECT z, count(*) FROM (SELECT zone AS z FROM green UNION ALL SELECT zone FROM yellow) t GROUP BY z",
        )
        .await;
        assert!(
            from_first_aggregate(&plan)
                .iter()
                .any(|l| l.trim_start() == "Union"),
            "{plan}"
        );
    }
}
