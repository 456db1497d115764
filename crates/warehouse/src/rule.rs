//! What the warehouse's logical optimizer rules share.

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::{Aggregate, LogicalPlan};

/// `plan` rewritten by `f` if it is an aggregate and `f` has a rewrite for it; `plan` unchanged otherwise.
pub(crate) fn on_aggregate(
    plan: LogicalPlan,
    f: impl FnOnce(&Aggregate) -> Result<Option<LogicalPlan>>,
) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Aggregate(aggregate) = &plan else {
        return Ok(Transformed::no(plan));
    };
    match f(aggregate)? {
        Some(rewritten) => Ok(Transformed::yes(rewritten)),
        None => Ok(Transformed::no(plan)),
    }
}
