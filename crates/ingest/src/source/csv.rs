//! Strict CSV parsing into the unified schema: columns are matched by header name (any order, any case, older
//! spellings), every value is parsed as the column's declared type, and a row with any bad value goes to
//! quarantine whole, with its line, column, value and reason. Nothing is inferred from the data.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use ::csv::ByteRecord;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use tripline_core::time::{parse_timestamp, parse_timestamp_bytes};
use tripline_core::{ColumnSpec, ColumnType, QuarantinedRow, SchemaDrift, TripKind};

use super::{ParsedBatch, SharedHash, SourceFormat, TripReader, hex, map_columns, read_error};
use crate::error::{IngestError, Result};

/// Reads a TLC CSV (plain or gzip) as validated batches.
pub struct CsvTripReader {
    kind: TripKind,
    /// Chunks of raw records from the splitter thread, and the way back for their buffers.
    chunks: Receiver<Result<Vec<ByteRecord>>>,
    recycle: SyncSender<Vec<ByteRecord>>,
    /// For each table column, the field index in the file.
    field_of_column: Vec<Option<usize>>,
    header_fields: usize,
    values: Vec<Value>,
    drift: Vec<SchemaDrift>,
    format: SourceFormat,
    hash: SharedHash,
    done: bool,
}

/// Records per chunk handed from the splitter thread to the parser (and so the most rows in one CSV batch).
const CHUNK_ROWS: usize = 16_384;

/// A parsed field value, held until the whole row is known to be valid.
#[derive(Debug, Clone, Copy)]
enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(usize),
}

impl CsvTripReader {
    /// Read the header and map it onto the kind's unified schema.
    pub(super) fn new(
        input: Box<dyn Read + Send>,
        name: &str,
        kind: TripKind,
        batch_rows: usize,
        format: SourceFormat,
        hash: SharedHash,
    ) -> Result<Self> {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut header = ::csv::ByteRecord::new();
        let has_header = reader
            .read_byte_record(&mut header)
            .map_err(|e| csv_error(name, &e))?;
        if !has_header {
            return Err(IngestError::bad(
                name,
                "the source has no lines: expected a header line",
            ));
        }
        let (field_of_column, drift) = map_header(name, kind, &header)?;
        // Splitting the byte stream into records runs on its own thread, so splitting, value parsing and the
        // sink's encoding overlap across cores.
        // Chunks stay small so the records in flight (a few chunks) take tens of MiB, not hundreds.
        let chunk_rows = batch_rows.min(CHUNK_ROWS);
        let (chunk_tx, chunks) = sync_channel(2);
        let (recycle, recycled) = sync_channel(3);
        let splitter_name = name.to_string();
        std::thread::Builder::new()
            .name("csv-split".into())
            .spawn(move || split_records(reader, &splitter_name, chunk_rows, &chunk_tx, &recycled))
            .map_err(|e| IngestError::bad(name, format!("cannot start a reader thread: {e}")))?;
        Ok(Self {
            kind,
            chunks,
            recycle,
            field_of_column,
            header_fields: header.len(),
            values: vec![Value::Null; kind.columns().len()],
            drift,
            format,
            hash,
            done: false,
        })
    }

    /// Parse the current record into `self.values`, or say what is wrong with it.
    fn parse_record(
        &mut self,
        record: &ByteRecord,
    ) -> Result<(), (Option<&'static str>, String, String)> {
        if record.len() != self.header_fields {
            let reason = format!(
                "expected {} fields as in the header, found {}",
                self.header_fields,
                record.len()
            );
            return Err((None, String::new(), reason));
        }
        for (i, spec) in self.kind.columns().iter().enumerate() {
            let Some(field) = self.field_of_column[i] else {
                self.values[i] = Value::Null;
                continue;
            };
            let raw = &record[field];
            let fail = |reason: String| {
                (
                    Some(spec.name),
                    String::from_utf8_lossy(raw).into_owned(),
                    reason,
                )
            };
            self.values[i] = parse_value(spec, raw, field).map_err(fail)?;
            if self.kind.pickup_column() == Some(i) && matches!(self.values[i], Value::Null) {
                return Err(fail(
                    "the pickup time is missing: the trip cannot be placed in a month".into(),
                ));
            }
        }
        Ok(())
    }
}

fn parse_value(spec: &ColumnSpec, raw: &[u8], field: usize) -> Result<Value, String> {
    let raw = trim_ascii(raw);
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    let expected = || format!("expected {}", spec.ty.expected());
    let text = || std::str::from_utf8(raw).map_err(|_| "not valid UTF-8".to_string());
    match spec.ty {
        ColumnType::Int32 | ColumnType::Int64 => {
            let v = match fast_i64(raw) {
                Some(v) => v,
                // Since 2020 the TLC writes some integer columns as floats ("1.0"); accept whole values only.
                None => match text()?.parse::<f64>() {
                    Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
                    Ok(_) => return Err(format!("{}, found a fraction", expected())),
                    Err(_) => return Err(expected()),
                },
            };
            if spec.ty == ColumnType::Int32 && i32::try_from(v).is_err() {
                return Err("out of range for a 32-bit integer".into());
            }
            spec.domain.check_int(v).map_err(str::to_string)?;
            Ok(Value::Int(v))
        }
        ColumnType::Float64 => match fast_f64(raw) {
            Some(f) => Ok(Value::Float(f)),
            None => match text()?.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                _ => Err(expected()),
            },
        },
        ColumnType::Timestamp => parse_timestamp_bytes(raw)
            .map(Value::Int)
            .ok_or_else(expected),
        ColumnType::Utf8 => text().map(|_| Value::Text(field)),
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    match (b.first(), b.last()) {
        (Some(f), Some(l)) if !f.is_ascii_whitespace() && !l.is_ascii_whitespace() => b,
        _ => b.trim_ascii(),
    }
}

/// Plain decimal integers (`-12`, `265`): the common case, parsed without UTF-8 checks. `None` defers to the
/// general parser (floats like `1.0`, or anything unusual).
fn fast_i64(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(if neg { -v } else { v })
}

/// Plain decimals with at most 15 significant digits (`8.5`, `.20`, `-3`): the mantissa and 10^k are exact in an
/// f64 and IEEE division rounds correctly, so the result is bit-identical to the standard parser (Clinger's fast
/// path). `None` defers to the standard parser (exponents, long digit strings, anything unusual).
fn fast_f64(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (neg, rest) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac_digits = 0usize;
    let mut seen_dot = false;
    for &c in rest {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                digits += 1;
                frac_digits += usize::from(seen_dot);
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => return None,
        }
    }
    if digits == 0 || digits > 15 {
        return None;
    }
    let v = mantissa as f64 / POW10[frac_digits];
    Some(if neg { -v } else { v })
}

/// Match header names to table columns; refuse a header that is missing or belongs to another kind.
fn map_header(
    name: &str,
    kind: TripKind,
    header: &::csv::ByteRecord,
) -> Result<(Vec<Option<usize>>, Vec<SchemaDrift>)> {
    let fields: Vec<String> = header
        .iter()
        .map(|f| {
            String::from_utf8_lossy(f)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
    let map = map_columns(kind, &fields)
        .map_err(|m| IngestError::bad(name, format!("wrong header: {m}")))?;
    if !map.missing.is_empty() {
        let missing = map.missing.join(", ");
        let shown = fields.iter().take(6).cloned().collect::<Vec<_>>().join(",");
        let message = if map.table_to_file.iter().all(Option::is_none) && looks_like_data(&fields) {
            format!(
                "missing header: the first line looks like data ({shown}...); TLC files start with a header line"
            )
        } else if let Some(other) = better_kind(kind, &fields) {
            format!(
                "wrong header for kind {kind}: missing {missing}; the header looks like a {other} file: use --kind {other}"
            )
        } else {
            format!("wrong header for kind {kind}: missing column(s) {missing} (found: {shown}...)")
        };
        return Err(IngestError::bad(name, message));
    }
    Ok((map.table_to_file, map.drift))
}

fn looks_like_data(fields: &[String]) -> bool {
    // Header names are never numbers or timestamps; data rows almost always hold some.
    fields
        .iter()
        .any(|f| f.parse::<f64>().is_ok() || parse_timestamp(f).is_some())
}

fn better_kind(kind: TripKind, fields: &[String]) -> Option<TripKind> {
    TripKind::ALL.into_iter().filter(|k| *k != kind).find(|k| {
        let found: Vec<usize> = fields.iter().filter_map(|f| k.find_column(f)).collect();
        k.columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.required)
            .all(|(i, _)| found.contains(&i))
    })
}

fn csv_error(name: &str, e: &::csv::Error) -> IngestError {
    match e.kind() {
        ::csv::ErrorKind::Io(io) => read_error(name, io),
        _ => IngestError::bad(name, format!("unreadable CSV: {e}")),
    }
}

/// Read raw records in chunks of `rows`, reusing the buffers the parser hands back. Ends at the end of the input,
/// at the first read error (sent on), or when the parser hangs up.
fn split_records(
    mut reader: ::csv::Reader<Box<dyn Read + Send>>,
    name: &str,
    rows: usize,
    chunks: &SyncSender<Result<Vec<ByteRecord>>>,
    recycled: &Receiver<Vec<ByteRecord>>,
) {
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        let mut n = 0;
        let mut end = false;
        while n < rows {
            if n == chunk.len() {
                chunk.push(ByteRecord::new());
            }
            match reader.read_byte_record(&mut chunk[n]) {
                Ok(true) => n += 1,
                Ok(false) => {
                    end = true;
                    break;
                }
                Err(e) => {
                    let _ = chunks.send(Err(csv_error(name, &e)));
                    return;
                }
            }
        }
        chunk.truncate(n);
        if (n > 0 && chunks.send(Ok(chunk)).is_err()) || end {
            return;
        }
    }
}

enum Builder {
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Ts(TimestampMicrosecondBuilder),
    Str(StringBuilder),
}

impl Builder {
    fn new(ty: ColumnType, capacity: usize) -> Self {
        match ty {
            ColumnType::Int32 => Self::I32(Int32Builder::with_capacity(capacity)),
            ColumnType::Int64 => Self::I64(Int64Builder::with_capacity(capacity)),
            ColumnType::Float64 => Self::F64(Float64Builder::with_capacity(capacity)),
            ColumnType::Timestamp => Self::Ts(TimestampMicrosecondBuilder::with_capacity(capacity)),
            ColumnType::Utf8 => Self::Str(StringBuilder::with_capacity(capacity, capacity * 4)),
        }
    }

    fn append(&mut self, v: Value, record: &ByteRecord) {
        match (self, v) {
            (Self::I32(b), Value::Int(x)) => b.append_value(x as i32),
            (Self::I64(b), Value::Int(x)) => b.append_value(x),
            (Self::F64(b), Value::Float(x)) => b.append_value(x),
            (Self::Ts(b), Value::Int(x)) => b.append_value(x),
            (Self::Str(b), Value::Text(f)) => {
                b.append_value(std::str::from_utf8(trim_ascii(&record[f])).expect("validated"));
            }
            (Self::I32(b), _) => b.append_null(),
            (Self::I64(b), _) => b.append_null(),
            (Self::F64(b), _) => b.append_null(),
            (Self::Ts(b), _) => b.append_null(),
            (Self::Str(b), _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::I32(mut b) => Arc::new(b.finish()),
            Self::I64(mut b) => Arc::new(b.finish()),
            Self::F64(mut b) => Arc::new(b.finish()),
            Self::Ts(mut b) => Arc::new(b.finish()),
            Self::Str(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The record as it appeared, re-joined as CSV, so a quarantined row loses nothing.
fn render_record(record: &::csv::ByteRecord) -> String {
    let mut out = String::new();
    for (i, f) in record.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let text = String::from_utf8_lossy(f);
        if text.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    out
}

impl TripReader for CsvTripReader {
    fn next_batch(&mut self) -> Result<Option<ParsedBatch>> {
        if self.done {
            return Ok(None);
        }
        let chunk = match self.chunks.recv() {
            Ok(chunk) => chunk?,
            Err(_) => {
                self.done = true;
                return Ok(None);
            }
        };
        let columns = self.kind.columns();
        let mut builders: Vec<Builder> = columns
            .iter()
            .map(|c| Builder::new(c.ty, chunk.len()))
            .collect();
        let mut quarantined = Vec::new();
        for record in &chunk {
            match self.parse_record(record) {
                Ok(()) => {
                    for (b, v) in builders.iter_mut().zip(&self.values) {
                        b.append(*v, record);
                    }
                }
                Err((column, value, reason)) => quarantined.push(QuarantinedRow {
                    line: record.position().map_or(0, |p| p.line()),
                    column: column.map(str::to_string),
                    value,
                    reason,
                    record: render_record(record),
                }),
            }
        }
        let _ = self.recycle.try_send(chunk);
        let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
        let batch =
            RecordBatch::try_new(self.kind.schema(), arrays).expect("builders follow the schema");
        Ok(Some(ParsedBatch { batch, quarantined }))
    }

    fn drift(&self) -> &[SchemaDrift] {
        &self.drift
    }

    fn format(&self) -> SourceFormat {
        self.format
    }

    fn content_hash(&self) -> String {
        hex(&self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        kind: TripKind,
        text: &str,
    ) -> Result<(Vec<RecordBatch>, Vec<QuarantinedRow>, Vec<SchemaDrift>)> {
        let hash: SharedHash = Default::default();
        let mut r = CsvTripReader::new(
            Box::new(std::io::Cursor::new(text.to_string().into_bytes())),
            "t.csv",
            kind,
            2,
            SourceFormat::Csv,
            hash,
        )?;
        let (mut batches, mut bad) = (Vec::new(), Vec::new());
        while let Some(p) = r.next_batch()? {
            batches.push(p.batch);
            bad.extend(p.quarantined);
        }
        Ok((batches, bad, r.drift().to_vec()))
    }

    const ZONES: &str = "\"locationid\",\"borough\",\"zone\",\"service_zone\"\n1,\"EWR\",\"Newark Airport\",\"EWR\"\n";

    #[test]
    fn quoted_lowercase_zone_header_loads() {
        let (batches, bad, drift) = read(TripKind::Zones, ZONES).unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        assert!(bad.is_empty() && drift.is_empty());
    }

    #[test]
    fn bad_values_are_quarantined_with_line_column_value_and_reason() {
        let text = format!(
            "{ZONES}2,Queens,x,Boro Zone\nabc,Queens,x,Boro Zone\n300,Queens,x,y\n4,Queens\n5,Bronx,z,Boro Zone\n"
        );
        let (batches, bad, _) = read(TripKind::Zones, &text).unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        assert_eq!(bad.len(), 3);
        assert_eq!(
            (bad[0].line, bad[0].column.as_deref(), bad[0].value.as_str()),
            (4, Some("LocationID"), "abc")
        );
        assert_eq!(bad[0].reason, "expected an integer");
        assert_eq!(bad[0].record, "abc,Queens,x,Boro Zone");
        assert_eq!(bad[1].reason, "zone ID out of range 1..=265");
        assert_eq!(bad[2].reason, "expected 4 fields as in the header, found 2");
    }

    #[test]
    fn integers_written_as_whole_floats_are_accepted_and_fractions_are_not() {
        let spec = TripKind::Yellow.columns()[3];
        assert!(matches!(parse_value(&spec, b"1.0", 0), Ok(Value::Int(1))));
        assert!(matches!(parse_value(&spec, b" 2 ", 0), Ok(Value::Int(2))));
        assert_eq!(
            parse_value(&spec, b"1.5", 0).unwrap_err(),
            "expected an integer, found a fraction"
        );
    }

    #[test]
    fn the_fast_number_paths_agree_with_the_standard_parser_bit_for_bit() {
        let samples = [
            "0",
            "8",
            "11.8",
            ".20",
            "-0.5",
            "+3.25",
            "2.10",
            "123456789.12345",
            "0.30000000000000004",
            "1e3",
            "1.5E-2",
            "nan",
            "inf",
            "1..2",
            "-",
            "",
            "9999999999999999",
            "00012.500",
        ];
        for s in samples {
            let std = s.parse::<f64>().ok().filter(|f| f.is_finite());
            if let Some(fast) = fast_f64(s.as_bytes()) {
                assert_eq!(Some(fast.to_bits()), std.map(f64::to_bits), "{s}");
            }
            if let Some(fast) = fast_i64(s.as_bytes()) {
                assert_eq!(Ok(fast), s.parse::<i64>(), "{s}");
            }
        }
        // A sweep of cent amounts, the bulk of TLC money columns.
        for cents in -5_000i64..500_000 {
            let sign = if cents < 0 { "-" } else { "" };
            let s = format!("{sign}{}.{:02}", (cents / 100).abs(), (cents % 100).abs());
            assert_eq!(
                fast_f64(s.as_bytes()).map(f64::to_bits),
                s.parse::<f64>().ok().map(f64::to_bits),
                "{s}"
            );
        }
    }

    #[test]
    fn a_header_of_another_kind_is_named() {
        let green = "VendorID,lpep_pickup_datetime,lpep_dropoff_datetime,store_and_fwd_flag,RatecodeID,PULocationID,\
            DOLocationID,passenger_count,trip_distance,fare_amount,extra,mta_tax,tip_amount,tolls_amount,ehail_fee,\
            improvement_surcharge,total_amount,payment_type,trip_type,congestion_surcharge\n";
        let e = read(TripKind::Yellow, green).unwrap_err().to_string();
        assert!(e.contains("use --kind green"), "{e}");
    }

    #[test]
    fn a_missing_header_is_named() {
        let e = read(TripKind::Zones, "1,EWR,Newark Airport,EWR\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.csv: missing header"), "{e}");
        let e = read(TripKind::Zones, "").unwrap_err().to_string();
        assert!(e.contains("no lines"), "{e}");
    }

    #[test]
    fn missing_optional_and_unknown_columns_are_reported_as_drift() {
        let text = "LocationID,Borough,Zone,service_zone,extra_col\n1,EWR,N,EWR,x\n";
        let (_, _, drift) = read(TripKind::Zones, text).unwrap();
        assert_eq!(
            drift[0].to_string(),
            "extra_col: not in the unified schema: ignored"
        );
    }
}
