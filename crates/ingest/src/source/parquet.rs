//! Parquet sources: columns matched by name and converted to the unified types. The TLC's Parquet files drift
//! between months (IDs as doubles from 2020, `ehail_fee` int vs double, nanosecond timestamps, added columns);
//! every conversion is checked, a value that does not convert sends its row to quarantine, and each type change is
//! reported as drift.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Float64Builder, Int32Builder, Int64Array,
    Int64Builder, RecordBatch, StringArray, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
    new_null_array,
};
use arrow::compute::{CastOptions, cast_with_options, filter_record_batch};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use tripline_core::time::parse_timestamp;
use tripline_core::{ColumnSpec, ColumnType, QuarantinedRow, SchemaDrift, TripKind};
use xxhash_rust::xxh3::Xxh3;

use super::{ParsedBatch, SourceFormat, TripReader, map_columns};
use crate::error::{IngestError, Result};
use crate::progress::Progress;

/// Reads a TLC Parquet file as validated batches.
pub struct ParquetTripReader {
    name: String,
    kind: TripKind,
    reader: ParquetRecordBatchReader,
    /// For each table column, the column index in the file.
    file_column: Vec<Option<usize>>,
    drift: Vec<SchemaDrift>,
    hash: String,
    rows_seen: u64,
    progress: Arc<Progress>,
    bytes_per_row: f64,
}

impl ParquetTripReader {
    /// Open a Parquet file and map its columns onto the kind's unified schema.
    pub(super) fn open(
        mut file: File,
        name: &str,
        kind: TripKind,
        batch_rows: usize,
        progress: Arc<Progress>,
    ) -> Result<Self> {
        let bad = |m: String| IngestError::bad(name, m);
        let hash = hash_file(&mut file).map_err(|e| super::read_error(name, &e))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            bad(format!(
                "not a readable Parquet file (truncated or corrupt?): {e}"
            ))
        })?;
        let rows = builder.metadata().file_metadata().num_rows().max(1) as f64;
        let schema = builder.schema().clone();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let map = map_columns(kind, &names).map_err(|m| bad(format!("wrong columns: {m}")))?;
        if !map.missing.is_empty() {
            return Err(bad(format!(
                "wrong columns for kind {kind}: missing {}",
                map.missing.join(", ")
            )));
        }
        let mut drift = Vec::new();
        for (spec, f) in kind.columns().iter().zip(&map.table_to_file) {
            let Some(f) = f else { continue };
            let (have, want) = (schema.field(*f).data_type(), spec.ty.arrow());
            if !same_type(have, &want) {
                drift.push(SchemaDrift {
                    column: spec.name.into(),
                    change: format!("{have} in file, {want} in table: converted"),
                });
            }
        }
        drift.extend(map.drift);
        let file_column = map.table_to_file;
        let reader = builder
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            kind,
            reader,
            file_column,
            drift,
            hash,
            rows_seen: 0,
            progress,
            bytes_per_row: len as f64 / rows,
        })
    }
}

fn same_type(file: &DataType, table: &DataType) -> bool {
    match (file, table) {
        (DataType::Timestamp(TimeUnit::Microsecond, _), DataType::Timestamp(..)) => true,
        (DataType::LargeUtf8 | DataType::Utf8View, DataType::Utf8) => true,
        _ => file == table,
    }
}

fn hash_file(file: &mut File) -> std::io::Result<String> {
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(format!("{:016x}", h.digest()))
}

/// Convert one file column to its table type. Returns the converted array and, per row, why it failed (if it did).
fn convert(array: &ArrayRef, spec: &ColumnSpec) -> (ArrayRef, Vec<(usize, String)>) {
    let mut bad = Vec::new();
    let n = array.len();
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    let converted: ArrayRef = match spec.ty {
        ColumnType::Int32 | ColumnType::Int64 => {
            // Go through f64 for floating inputs (to catch fractions), i64 for everything else.
            let ints: Vec<Option<i64>> = if array.data_type().is_floating() {
                let f = cast_with_options(array, &DataType::Float64, &safe).expect("float to f64");
                let f = f.as_any().downcast_ref::<Float64Array>().expect("f64");
                (0..n)
                    .map(|i| {
                        if f.is_null(i) {
                            return None;
                        }
                        let v = f.value(i);
                        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                            Some(v as i64)
                        } else {
                            bad.push((i, format!("expected {}, found {v}", spec.ty.expected())));
                            None
                        }
                    })
                    .collect()
            } else {
                let parsed: Vec<Option<i64>> = if matches!(
                    array.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) {
                    let s = cast_with_options(array, &DataType::Utf8, &safe).expect("to utf8");
                    let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
                    (0..n)
                        .map(|i| {
                            let t = s
                                .is_valid(i)
                                .then(|| s.value(i).trim())
                                .filter(|t| !t.is_empty())?;
                            t.parse::<i64>()
                                .map_err(|_| {
                                    bad.push((i, format!("expected {}", spec.ty.expected())))
                                })
                                .ok()
                        })
                        .collect()
                } else {
                    match cast_with_options(array, &DataType::Int64, &safe) {
                        Ok(c) => c
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .expect("i64")
                            .iter()
                            .collect(),
                        Err(e) => {
                            (0..n)
                                .filter(|i| array.is_valid(*i))
                                .for_each(|i| bad.push((i, e.to_string())));
                            vec![None; n]
                        }
                    }
                };
                parsed
            };
            let mut checked = Vec::with_capacity(n);
            for (i, v) in ints.into_iter().enumerate() {
                let v = v.and_then(|v| {
                    let range_ok = spec.ty == ColumnType::Int64 || i32::try_from(v).is_ok();
                    let domain = if range_ok {
                        spec.domain.check_int(v).map_err(str::to_string)
                    } else {
                        Err("out of range for a 32-bit integer".to_string())
                    };
                    domain.map_err(|r| bad.push((i, r))).ok().map(|()| v)
                });
                checked.push(v);
            }
            if spec.ty == ColumnType::Int32 {
                let mut b = Int32Builder::with_capacity(n);
                checked
                    .into_iter()
                    .for_each(|v| b.append_option(v.map(|v| v as i32)));
                Arc::new(b.finish())
            } else {
                let mut b = Int64Builder::with_capacity(n);
                checked.into_iter().for_each(|v| b.append_option(v));
                Arc::new(b.finish())
            }
        }
        ColumnType::Float64 => match array.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let s = cast_with_options(array, &DataType::Utf8, &safe).expect("to utf8");
                let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
                let mut b = Float64Builder::with_capacity(n);
                for i in 0..n {
                    let t = s
                        .is_valid(i)
                        .then(|| s.value(i).trim())
                        .filter(|t| !t.is_empty());
                    match t.map(str::parse::<f64>) {
                        None => b.append_null(),
                        Some(Ok(v)) if v.is_finite() => b.append_value(v),
                        Some(_) => {
                            bad.push((i, "expected a number".into()));
                            b.append_null();
                        }
                    }
                }
                Arc::new(b.finish())
            }
            _ => cast_checked(array, &DataType::Float64, &mut bad, spec),
        },
        ColumnType::Timestamp => match array.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let s = cast_with_options(array, &DataType::Utf8, &safe).expect("to utf8");
                let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
                let mut b = TimestampMicrosecondBuilder::with_capacity(n);
                for i in 0..n {
                    let t = s
                        .is_valid(i)
                        .then(|| s.value(i).trim())
                        .filter(|t| !t.is_empty());
                    match t.map(parse_timestamp) {
                        None => b.append_null(),
                        Some(Some(v)) => b.append_value(v),
                        Some(None) => {
                            bad.push((i, format!("expected {}", spec.ty.expected())));
                            b.append_null();
                        }
                    }
                }
                Arc::new(b.finish())
            }
            // Timestamps with a time zone are taken as the naive local time the TLC means.
            DataType::Timestamp(unit, Some(_)) => {
                let naive = cast_with_options(array, &DataType::Timestamp(*unit, None), &safe)
                    .expect("drop tz");
                cast_checked(&naive, &spec.ty.arrow(), &mut bad, spec)
            }
            _ => cast_checked(array, &spec.ty.arrow(), &mut bad, spec),
        },
        ColumnType::Utf8 => cast_checked(array, &DataType::Utf8, &mut bad, spec),
    };
    (converted, bad)
}

/// Cast, marking every row whose non-null value became null as failed.
fn cast_checked(
    array: &ArrayRef,
    to: &DataType,
    bad: &mut Vec<(usize, String)>,
    spec: &ColumnSpec,
) -> ArrayRef {
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    match cast_with_options(array, to, &safe) {
        Ok(c) => {
            for i in 0..array.len() {
                if array.is_valid(i) && c.is_null(i) {
                    bad.push((i, format!("expected {}", spec.ty.expected())));
                }
            }
            c
        }
        Err(e) => {
            (0..array.len())
                .filter(|i| array.is_valid(*i))
                .for_each(|i| bad.push((i, e.to_string())));
            new_null_array(to, array.len())
        }
    }
}

impl TripReader for ParquetTripReader {
    fn next_batch(&mut self) -> Result<Option<ParsedBatch>> {
        let Some(file_batch) = self.reader.next() else {
            return Ok(None);
        };
        let file_batch = file_batch
            .map_err(|e| IngestError::bad(&self.name, format!("corrupt Parquet data: {e}")))?;
        let n = file_batch.num_rows();
        let mut arrays = Vec::with_capacity(self.file_column.len());
        let mut row_error: Vec<Option<(String, String)>> = vec![None; n];
        for (spec, f) in self.kind.columns().iter().zip(&self.file_column) {
            match f {
                None => arrays.push(new_null_array(&spec.ty.arrow(), n)),
                Some(f) => {
                    let (array, bad) = convert(file_batch.column(*f), spec);
                    for (row, reason) in bad {
                        row_error[row].get_or_insert((spec.name.to_string(), reason));
                    }
                    arrays.push(array);
                }
            }
        }
        if let Some(p) = self.kind.pickup_column() {
            let ts = arrays[p]
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("timestamp");
            for (row, err) in row_error.iter_mut().enumerate() {
                if ts.is_null(row) && err.is_none() {
                    *err = Some((
                        self.kind.columns()[p].name.to_string(),
                        "the pickup time is missing: the trip cannot be placed in a month".into(),
                    ));
                }
            }
        }
        let batch = RecordBatch::try_new(self.kind.schema(), arrays)
            .expect("converted to the table schema");
        let mut quarantined = Vec::new();
        let batch = if row_error.iter().any(Option::is_some) {
            let options = FormatOptions::default().with_null("");
            let formatters: Vec<ArrayFormatter> = file_batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("displayable"))
                .collect();
            let schema = file_batch.schema();
            for (row, err) in row_error.iter().enumerate() {
                let Some((column, reason)) = err else {
                    continue;
                };
                let value = schema
                    .index_of(column)
                    .ok()
                    .or_else(|| {
                        schema
                            .fields()
                            .iter()
                            .position(|f| f.name().eq_ignore_ascii_case(column))
                    })
                    .map(|c| formatters[c].value(row).to_string())
                    .unwrap_or_default();
                let record = formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                quarantined.push(QuarantinedRow {
                    line: self.rows_seen + row as u64 + 1,
                    column: Some(column.clone()),
                    value,
                    reason: reason.clone(),
                    record,
                });
            }
            let keep: BooleanArray = row_error.iter().map(|e| Some(e.is_none())).collect();
            filter_record_batch(&batch, &keep).expect("same length")
        } else {
            batch
        };
        self.rows_seen += n as u64;
        self.progress
            .add_bytes((n as f64 * self.bytes_per_row) as u64);
        Ok(Some(ParsedBatch { batch, quarantined }))
    }

    fn drift(&self) -> &[SchemaDrift] {
        &self.drift
    }

    fn format(&self) -> SourceFormat {
        SourceFormat::Parquet
    }

    fn content_hash(&self) -> String {
        self.hash.clone()
    }
}
