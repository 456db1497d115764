//! What a query reads: the files its physical plan scans after pruning (before running) and the bytes its Parquet
//! readers fetched (after running).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use serde::Serialize;

/// Bytes and files a statement read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// Bytes read from storage. After a run: what the Parquet readers fetched (footers, and the column chunks of
    /// row groups that survived pruning). In a dry run: the sizes of the files the plan would open.
    pub bytes_scanned: u64,
    /// Data files the plan opens after partition and file pruning.
    pub files_read: u64,
    /// True when `bytes_scanned` is the planned file size rather than a measurement (dry runs, and writes whose
    /// reading happens inside the Delta writer).
    pub estimated: bool,
}

/// The files a physical plan scans, by location, with their sizes.
#[derive(Debug, Default)]
pub struct PlannedFiles {
    /// Location -> size in bytes.
    pub files: BTreeMap<String, u64>,
}

impl PlannedFiles {
    /// A report estimating the bytes as the planned files' sizes.
    pub fn report(&self) -> ScanReport {
        ScanReport {
            bytes_scanned: self.files.values().sum(),
            files_read: self.files.len() as u64,
            estimated: true,
        }
    }
}

/// Every file of every file scan in the plan (a file split into byte ranges counts once).
pub fn planned_files(plan: &Arc<dyn ExecutionPlan>) -> PlannedFiles {
    let mut out = PlannedFiles::default();
    visit(plan, &mut |node| {
        if let Some(exec) = node.downcast_ref::<DataSourceExec>()
            && let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>()
        {
            for group in &config.file_groups {
                for file in group.iter() {
                    out.files.insert(
                        format!(
                            "{}{}",
                            config.object_store_url.as_str(),
                            file.object_meta.location
                        ),
                        file.object_meta.size,
                    );
                }
            }
        }
    });
    out
}

/// The `bytes_scanned` metric summed over the executed plan.
pub fn bytes_scanned(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let mut total = 0u64;
    visit(plan, &mut |node| {
        if let Some(metrics) = node.metrics()
            && let Some(v) = metrics.sum_by_name("bytes_scanned")
        {
            total += v.as_usize() as u64;
        }
    });
    total
}

fn visit(plan: &Arc<dyn ExecutionPlan>, f: &mut dyn FnMut(&dyn ExecutionPlan)) {
    f(plan.as_ref());
    for child in plan.children() {
        visit(child, f);
    }
}
