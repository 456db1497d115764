//! The lake sink: one Parquet file per source under `raw/<kind>/year=YYYY/month=MM/`, named after the source, so a
//! re-run of the same source replaces its file atomically and never adds a second copy.

use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use tripline_core::{TripKind, YearMonth};
use tripline_lake::{Lake, LoadRecord, StagedParquet, load_record_path, raw_dir};

use super::{Committed, LoadSource, LoadSummary, Sink, SinkLoad};
use crate::error::{IngestError, Result};

/// Loads into the raw zone of a lake.
pub struct LakeSink {
    lake: Lake,
}

impl LakeSink {
    /// A sink writing into `lake`.
    pub fn new(lake: Lake) -> Self {
        Self { lake }
    }
}

/// One source being written to the lake.
pub struct LakeLoad {
    lake: Lake,
    source: LoadSource,
    staged: Option<(StagedParquet, Option<YearMonth>)>,
}

/// The file name a source gets in the lake: its name without data-file extensions, plus `.parquet`.
pub fn lake_file_name(source: &str) -> String {
    let mut stem = source;
    for ext in [".gz", ".csv", ".parquet", ".txt"] {
        stem = stem.strip_suffix(ext).unwrap_or(stem);
    }
    format!("{stem}.parquet")
}

impl Sink for LakeSink {
    type Load = LakeLoad;

    async fn begin(&mut self, source: &LoadSource) -> Result<LakeLoad> {
        Ok(LakeLoad {
            lake: self.lake.clone(),
            source: source.clone(),
            staged: None,
        })
    }
}

impl LakeLoad {
    async fn stage(&mut self, month: Option<YearMonth>) -> Result<()> {
        let path =
            raw_dir(self.source.kind, month).join(lake_file_name(&self.source.name).as_str());
        let staged = self
            .lake
            .stage_parquet(path, self.source.kind.schema())
            .await?;
        self.staged = Some((staged, month));
        Ok(())
    }
}

/// The month most of a batch's pickups fall in.
fn dominant_month(kind: TripKind, batch: &RecordBatch) -> Option<YearMonth> {
    let col = batch
        .column(kind.pickup_column()?)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()?;
    let mut counts: std::collections::BTreeMap<YearMonth, usize> = Default::default();
    for v in col.iter().flatten() {
        *counts.entry(YearMonth::of_micros(v)).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(m, _)| m)
}

impl SinkLoad for LakeLoad {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.staged.is_none() {
            let month = match (self.source.kind.is_trips(), self.source.month) {
                (false, _) => None,
                (true, Some(m)) => Some(m),
                (true, None) => dominant_month(self.source.kind, batch),
            };
            self.stage(month).await?;
        }
        let (staged, _) = self.staged.as_mut().expect("staged above");
        staged.write(batch).await?;
        Ok(())
    }

    async fn commit(mut self, summary: &LoadSummary) -> Result<Committed> {
        if self.staged.is_none() {
            if self.source.kind.is_trips() && self.source.month.is_none() {
                return Err(IngestError::bad(
                    &self.source.name,
                    "no valid rows and no month in the name: pass --month YYYY-MM to record an empty load",
                ));
            }
            self.stage(self.source.month).await?;
        }
        let (staged, month) = self.staged.take().expect("staged above");
        let file = staged.commit().await?;
        let name = file.path.filename().unwrap_or_default().to_string();
        let record = LoadRecord {
            source: self.source.name.clone(),
            content_hash: summary.content_hash.clone(),
            file: file.path.to_string(),
            month,
            account: summary.account,
            committed_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        self.lake
            .put_json(&load_record_path(self.source.kind, &name), &record)
            .await?;
        Ok(Committed {
            target: file.location,
            month,
            bytes: Some(file.bytes),
            ..Default::default()
        })
    }

    async fn abort(mut self) {
        if let Some((staged, _)) = self.staged.take() {
            staged.abort().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lake_file_names_drop_data_extensions() {
        assert_eq!(
            lake_file_name("yellow_tripdata_2021-01.csv.gz"),
            "yellow_tripdata_2021-01.parquet"
        );
        assert_eq!(
            lake_file_name("green_tripdata_2024-01.parquet"),
            "green_tripdata_2024-01.parquet"
        );
        assert_eq!(
            lake_file_name("taxi_zone_lookup.csv"),
            "taxi_zone_lookup.parquet"
        );
    }
}
