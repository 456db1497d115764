//! Group keys that a date-partitioned table already stores.
//!
//! A table made with `PARTITION BY DATE(col)` keeps `DATE(col)` as its Delta partition column `<col>_date`
//! (every write derives it from `col`, see `dml`). The course's reports group such a table by the date or the month
//! of `col` (`GROUP BY DATE(pickup)`, `date_trunc('month', pickup)`), which decodes every timestamp of the table
//! only to throw most of each away. The partition column holds that date for free: it is one value per file, never
//! read from the data pages. So, for an aggregate whose input is a scan of such a table (directly or through a
//! projection of plain columns), group keys over `col` are computed from the partition column instead:
//!
//! ```text
//! DATE(col) / CAST(col AS DATE)        =>  col_date
//! date_trunc('week'|'month'|'quarter'|'year', col)  =>  the period's first day of col_date, at midnight,
//!                                                       in col's timestamp unit
//! ```
//!
//! Both are equal for every row, NULL included (a NULL `col` has a NULL partition value), because `col` has no time
//! zone (a zoned timestamp's date depends on the zone, and such keys are left alone). Runs after
//! [`crate::fast_dates::FastDates`] (whose kernels it recognises) and [`crate::union_aggregate::UnionAggregate`]
//! (which brings the aggregate of each branch of a `UNION ALL` down to its table's scan).

use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, ArrayRef, Date32Array, PrimitiveArray};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, exec_err};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, LogicalPlan, Projection, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, TableScan, TableScanBuilder, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use crate::fast_dates::{Coarse, is_timestamp_to_date, on_argument, per_day, truncation_of};
use crate::pruning::DerivedPartitions;

/// The optimizer rule (see the module documentation), with the warehouse's date-partitioned tables.
#[derive(Debug)]
pub(crate) struct PartitionDates {
    tables: Arc<RwLock<DerivedPartitions>>,
}

impl PartitionDates {
    pub(crate) fn new(tables: Arc<RwLock<DerivedPartitions>>) -> Self {
        Self { tables }
    }
}

impl OptimizerRule for PartitionDates {
    fn name(&self) -> &str {
        "tripline_partition_dates"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        crate::rule::on_aggregate(plan, |aggregate| {
            let Some(scan) = scan_under(aggregate) else {
                return Ok(None);
            };
            let derived = self
                .tables
                .read()
                .expect("lock")
                .get(&scan.table_name.to_string())
                .cloned();
            match derived {
                Some(derived) => rewrite_keys(aggregate, scan, &derived),
                None => Ok(None),
            }
        })
    }
}

/// The scan an aggregate reads: its input, or the input of a projection that is its input.
fn scan_under(aggregate: &Aggregate) -> Option<&TableScan> {
    match aggregate.input.as_ref() {
        LogicalPlan::TableScan(scan) => Some(scan),
        LogicalPlan::Projection(Projection { input, .. }) => match input.as_ref() {
            LogicalPlan::TableScan(scan) => Some(scan),
            _ => None,
        },
        _ => None,
    }
}

/// `aggregate` (over `scan`) with its date keys over `source` computed from `partition`, or `None` if it has none.
fn rewrite_keys(
    aggregate: &Aggregate,
    scan: &TableScan,
    (source, partition): &(String, String),
) -> Result<Option<LogicalPlan>> {
    if aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Ok(None);
    }
    let table_schema = scan.source.schema();
    let (Ok(source_index), Ok(partition_index)) = (
        table_schema.index_of(source),
        table_schema.index_of(partition),
    ) else {
        return Ok(None);
    };
    let DataType::Timestamp(unit, None) = table_schema.field(source_index).data_type().clone()
    else {
        return Ok(None);
    };
    if table_schema.field(partition_index).data_type() != &DataType::Date32 {
        return Ok(None);
    }

    // The names the aggregate's input gives the source column: the scan's own, or a projection's plain column.
    let source_column = Column::new(Some(scan.table_name.clone()), source.as_str());
    let source_names: Vec<Column> = match aggregate.input.as_ref() {
        LogicalPlan::Projection(projection) => projection
            .expr
            .iter()
            .enumerate()
            .filter(
                |(_, e)| matches!((*e).clone().unalias(), Expr::Column(c) if c == source_column),
            )
            .map(|(i, _)| Column::from(projection.schema.qualified_field(i)))
            .collect(),
        _ => vec![source_column.clone()],
    };
    if source_names.is_empty() {
        return Ok(None);
    }
    let partition_column = Column::new(Some(scan.table_name.clone()), partition.as_str());
    let date = Expr::Column(partition_column.clone());

    let names = NamePreserver::new_for_projection();
    let mut changed = false;
    let group_expr = aggregate
        .group_expr
        .iter()
        .map(|key| {
            let saved = names.save(key);
            let (inner, alias) = match key {
                Expr::Alias(alias) => (alias.expr.as_ref(), Some(alias)),
                other => (other, None),
            };
            let replacement = match inner {
                Expr::Cast(Cast { expr, field })
                    if field.data_type() == &DataType::Date32 && is_source(expr, &source_names) =>
                {
                    Some(date.clone())
                }
                Expr::ScalarFunction(ScalarFunction { func, args })
                    if args.len() == 1 && is_source(&args[0], &source_names) =>
                {
                    if is_timestamp_to_date(func) {
                        Some(date.clone())
                    } else {
                        truncation_of(func).map(|granularity| {
                            Expr::ScalarFunction(ScalarFunction::new_udf(
                                Arc::new(period_start(granularity, unit)),
                                vec![date.clone()],
                            ))
                        })
                    }
                }
                _ => None,
            };
            match (replacement, alias) {
                (Some(new), Some(alias)) => {
                    changed = true;
                    Expr::Alias(datafusion::logical_expr::expr::Alias {
                        expr: Box::new(new),
                        ..alias.clone()
                    })
                }
                (Some(new), None) => {
                    changed = true;
                    saved.restore(new)
                }
                (None, _) => key.clone(),
            }
        })
        .collect::<Vec<_>>();
    if !changed {
        return Ok(None);
    }

    // The scan reads the partition column too (the source column stays until projection pruning drops it).
    let new_scan = match &scan.projection {
        Some(projection) if !projection.contains(&partition_index) => {
            let mut projection = projection.clone();
            projection.push(partition_index);
            LogicalPlan::TableScan(
                TableScanBuilder::from(scan.clone())
                    .with_projection(Some(projection))
                    .build()?,
            )
        }
        _ => LogicalPlan::TableScan(scan.clone()),
    };
    let input = match aggregate.input.as_ref() {
        LogicalPlan::Projection(projection) => {
            let mut expr = projection.expr.clone();
            if !expr
                .iter()
                .any(|e| matches!(e, Expr::Column(c) if *c == partition_column))
            {
                expr.push(date.clone());
            }
            LogicalPlan::Projection(Projection::try_new(expr, Arc::new(new_scan))?)
        }
        _ => new_scan,
    };
    Ok(Some(LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::new(input),
        group_expr,
        aggregate.aggr_expr.clone(),
    )?)))
}

fn is_source(expr: &Expr, names: &[Column]) -> bool {
    matches!(expr, Expr::Column(c) if names.contains(c))
}

/// The first instant of the `granularity` period holding a date, as a zone-less timestamp in `unit`: what
/// `date_trunc(granularity, ts)` gives for every `ts` on that date.
pub(crate) fn period_start(granularity: Coarse, unit: TimeUnit) -> ScalarUDF {
    ScalarUDF::new_from_impl(PeriodStart {
        granularity,
        unit,
        signature: Signature::exact(vec![DataType::Date32], Volatility::Immutable),
    })
}

/// See [`period_start`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct PeriodStart {
    granularity: Coarse,
    unit: TimeUnit,
    signature: Signature,
}

impl ScalarUDFImpl for PeriodStart {
    fn name(&self) -> &str {
        match self.granularity {
            Coarse::Week => "date_week_start",
            Coarse::Month => "date_month_start",
            Coarse::Quarter => "date_quarter_start",
            Coarse::Year => "date_year_start",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(self.unit, None))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Timestamp(self.unit, None),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (granularity, unit) = (self.granularity, self.unit);
        on_argument(args, |a| {
            let Some(dates) = a.as_any().downcast_ref::<Date32Array>() else {
                return exec_err!("{}: expects a date, got {}", self.name(), a.data_type());
            };
            let per_day = per_day(&unit);
            // Dates repeat in long runs (one partition value per file): the last one's answer is kept.
            let mut last = (i32::MIN, 0i64);
            let starts = dates.values().iter().map(|&d| {
                if d != last.0 {
                    last = (
                        d,
                        granularity.first_day(i64::from(d)).saturating_mul(per_day),
                    );
                }
                last.1
            });
            let nulls = dates.nulls().cloned();
            let out: ArrayRef = match unit {
                TimeUnit::Second => Arc::new(
                    PrimitiveArray::<TimestampSecondType>::from_iter_values_with_nulls(
                        starts, nulls,
                    ),
                ),
                TimeUnit::Millisecond => Arc::new(
                    PrimitiveArray::<TimestampMillisecondType>::from_iter_values_with_nulls(
                        starts, nulls,
                    ),
                ),
                TimeUnit::Microsecond => Arc::new(
                    PrimitiveArray::<TimestampMicrosecondType>::from_iter_values_with_nulls(
                        starts, nulls,
                    ),
                ),
                TimeUnit::Nanosecond => Arc::new(
                    PrimitiveArray::<TimestampNanosecondType>::from_iter_values_with_nulls(
                        starts, nulls,
                    ),
                ),
            };
            Ok(out)
        })
    }
}

/// Whether `func` is one of [`period_start`]'s functions.
pub(crate) fn is_period_start(func: &ScalarUDF) -> bool {
    (func.inner().as_ref() as &dyn std::any::Any)
        .downcast_ref::<PeriodStart>()
        .is_some()
}
