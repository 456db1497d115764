//! The PostgreSQL sink: rows stream in with binary `COPY` (no text parsing on the server), inside one transaction
//! per source, so a load is visible whole or not at all, and a killed client leaves the table as it was. A ledger
//! table (`tripline_load_ledger`) records every committed source with its row account; each table row carries the
//! source it came from (`tripline_source`), so re-loading a source replaces its rows instead of duplicating them.
//!
//! Modes, as the course does them:
//! - `append` (default): add this source's rows; an earlier load of the same source is replaced.
//! - `replace`: the table becomes exactly this load (dropped and re-created in the same transaction).
//! - `merge`: rows are keyed by `unique_row_id`, an md5 of the trip's identifying columns (the Kestra flow's
//!   key); rows already in the table are skipped, so overlapping sources never duplicate a trip.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use tokio_postgres::{Client, CopyInSink};
use tripline_core::{ColumnType, ErrorDomain, TripKind};

use super::{Committed, LoadSource, LoadSummary, Sink, SinkLoad};
use crate::error::{IngestError, Result};

/// How a load combines with what the table already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Add the source's rows; a re-load of the same source replaces its earlier rows.
    #[default]
    Append,
    /// Replace the whole table with this load.
    Replace,
    /// Insert only rows whose `unique_row_id` is new.
    Merge,
}

impl FromStr for LoadMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "append" => Ok(Self::Append),
            "replace" => Ok(Self::Replace),
            "merge" => Ok(Self::Merge),
            _ => Err(format!(
                "unknown mode '{s}': expected append, replace or merge"
            )),
        }
    }
}

/// The ledger of committed loads, in the target table's schema.
pub const LEDGER_TABLE: &str = "tripline_load_ledger";
/// The column that says which source a row came from.
pub const SOURCE_COLUMN: &str = "tripline_source";
/// The merge key column.
pub const ROW_ID_COLUMN: &str = "unique_row_id";

/// The default table name for a kind, as the course names them.
pub fn default_table(kind: TripKind) -> String {
    match kind {
        TripKind::Zones => "zones".into(),
        k => format!("{k}_taxi_data"),
    }
}

/// A `schema.table` or `table` name, validated and lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: String,
    table: String,
}

impl TableName {
    /// Parse a table name; only plain identifiers are accepted, so names never need escaping.
    pub fn parse(s: &str) -> Result<Self> {
        let ident = |p: &str| {
            let ok = !p.is_empty()
                && p.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && p.len() <= 63;
            ok.then(|| p.to_ascii_lowercase())
        };
        let bad = || {
            IngestError::Usage(format!(
                "bad table name '{s}': use letters, digits and _ (schema.table allowed)"
            ))
        };
        let (schema, table) = match s.split_once('.') {
            Some((sc, t)) => (ident(sc).ok_or_else(bad)?, ident(t).ok_or_else(bad)?),
            None => ("public".to_string(), ident(s).ok_or_else(bad)?),
        };
        Ok(Self { schema, table })
    }

    fn quoted(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.table)
    }

    fn in_schema(&self, name: &str) -> String {
        format!("\"{}\".\"{name}\"", self.schema)
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// Loads into one PostgreSQL table.
pub struct PostgresSink {
    client: Arc<Client>,
    server: String,
    table: TableName,
    mode: LoadMode,
}

/// The PostgreSQL column name of a TLC column: lowercase, so unquoted SQL (`SELECT pulocationid ...`) works.
pub fn pg_column(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn pg_error(target: &str, e: &tokio_postgres::Error) -> IngestError {
    from_pg(tripline_pg::error(target, e))
}

/// The shared PostgreSQL error, as an ingest error.
fn from_pg(e: tripline_pg::PgError) -> IngestError {
    match e {
        tripline_pg::PgError::Url(m) => IngestError::Usage(format!("bad PostgreSQL URL: {m}")),
        tripline_pg::PgError::NotSupported(m) => IngestError::Unsupported(m),
        tripline_pg::PgError::Server {
            server,
            message,
            domain,
            ..
        } => IngestError::Postgres {
            target: Some(server),
            message,
            domain,
        },
    }
}

impl PostgresSink {
    /// Connect to `url` and prepare to load `table` (or the course's default table for the kind).
    pub async fn connect(
        url: &str,
        table: Option<&str>,
        kind: TripKind,
        mode: LoadMode,
    ) -> Result<Self> {
        let tripline_pg::Connection { client, server } =
            tripline_pg::connect(url).await.map_err(from_pg)?;
        let table = TableName::parse(
            table
                .map_or_else(|| default_table(kind), str::to_string)
                .as_str(),
        )?;
        let sink = Self {
            client: Arc::new(client),
            server,
            table,
            mode,
        };
        sink.ensure_ledger().await?;
        Ok(sink)
    }

    /// The table loaded into.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    async fn ensure_ledger(&self) -> Result<()> {
        let sql = format!(
            "SELECT pg_advisory_lock(hashtext('tripline ledger'));
             CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS {ledger} (
                target_table text NOT NULL,
                source text NOT NULL,
                content_hash text NOT NULL,
                mode text NOT NULL,
                rows_read bigint NOT NULL,
                rows_written bigint NOT NULL,
                rows_quarantined bigint NOT NULL,
                loaded_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (target_table, source));
             SELECT pg_advisory_unlock(hashtext('tripline ledger'));",
            schema = self.table.schema,
            ledger = self.table.in_schema(LEDGER_TABLE)
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| pg_error(&self.server, &e))
    }
}

fn create_table_sql(table: &TableName, kind: TripKind, if_not_exists: bool) -> String {
    let cols: Vec<String> = kind
        .columns()
        .iter()
        .map(|c| format!("\"{}\" {}", pg_column(c.name), c.ty.postgres()))
        .collect();
    format!(
        "CREATE TABLE {}{} ({}, \"{SOURCE_COLUMN}\" text NOT NULL)",
        if if_not_exists { "IF NOT EXISTS " } else { "" },
        table.quoted(),
        cols.join(", ")
    )
}

/// The columns that identify a trip, hashed into `unique_row_id` by merge loads.
fn natural_key(kind: TripKind) -> &'static [&'static str] {
    match kind {
        TripKind::Yellow => &[
            "VendorID",
            "tpep_pickup_datetime",
            "tpep_dropoff_datetime",
            "PULocationID",
            "DOLocationID",
            "fare_amount",
            "trip_distance",
        ],
        TripKind::Green => &[
            "VendorID",
            "lpep_pickup_datetime",
            "lpep_dropoff_datetime",
            "PULocationID",
            "DOLocationID",
            "fare_amount",
            "trip_distance",
        ],
        TripKind::Fhv => &[
            "dispatching_base_num",
            "pickup_datetime",
            "dropoff_datetime",
            "PUlocationID",
            "DOlocationID",
        ],
        TripKind::Fhvhv => &[
            "hvfhs_license_num",
            "dispatching_base_num",
            "pickup_datetime",
            "dropoff_datetime",
            "PULocationID",
            "DOLocationID",
        ],
        TripKind::Zones => &["LocationID"],
    }
}

impl Sink for PostgresSink {
    type Load = PostgresLoad;

    async fn begin(&mut self, source: &LoadSource) -> Result<PostgresLoad> {
        let client = self.client.clone();
        let target = format!("{} ({})", self.table, self.server);
        let err = |e: tokio_postgres::Error| pg_error(&target, &e);
        client.batch_execute("BEGIN").await.map_err(err)?;
        let load = PostgresLoad {
            client: client.clone(),
            target: target.clone(),
            table: self.table.clone(),
            kind: source.kind,
            mode: self.mode,
            source: source.name.clone(),
            copy: None,
            buf: BytesMut::with_capacity(1 << 20),
            replaced_rows: None,
        };
        match load.prepare().await {
            Ok(load) => Ok(load),
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }
}

/// One source being copied into PostgreSQL, inside an open transaction.
pub struct PostgresLoad {
    client: Arc<Client>,
    target: String,
    table: TableName,
    kind: TripKind,
    mode: LoadMode,
    source: String,
    copy: Option<Pin<Box<CopyInSink<Bytes>>>>,
    buf: BytesMut,
    replaced_rows: Option<u64>,
}

const STAGING: &str = "tripline_staging";

impl PostgresLoad {
    fn err(&self, e: &tokio_postgres::Error) -> IngestError {
        pg_error(&self.target, e)
    }

    /// Inside the transaction: lock the table's loads, shape the table, open the COPY stream.
    async fn prepare(mut self) -> Result<Self> {
        let c = self.client.clone();
        let table = self.table.quoted();
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&self.table.to_string()],
        )
        .await
        .map_err(|e| self.err(&e))?;
        match self.mode {
            LoadMode::Replace => {
                let sql = format!(
                    "DROP TABLE IF EXISTS {table}; {}; DELETE FROM {} WHERE target_table = '{}'",
                    create_table_sql(&self.table, self.kind, false),
                    self.table.in_schema(LEDGER_TABLE),
                    self.table
                );
                c.batch_execute(&sql).await.map_err(|e| self.err(&e))?;
            }
            LoadMode::Append | LoadMode::Merge => {
                c.batch_execute(&create_table_sql(&self.table, self.kind, true))
                    .await
                    .map_err(|e| self.err(&e))?;
                self.check_columns().await?;
            }
        }
        let data_columns: Vec<String> = self
            .kind
            .columns()
            .iter()
            .map(|col| format!("\"{}\"", pg_column(col.name)))
            .collect();
        let copy_sql = match self.mode {
            LoadMode::Append => {
                let deleted = c
                    .execute(
                        &format!("DELETE FROM {table} WHERE \"{SOURCE_COLUMN}\" = $1"),
                        &[&self.source],
                    )
                    .await
                    .map_err(|e| self.err(&e))?;
                self.replaced_rows = Some(deleted);
                format!(
                    "COPY {table} ({}, \"{SOURCE_COLUMN}\") FROM STDIN (FORMAT binary)",
                    data_columns.join(", ")
                )
            }
            LoadMode::Replace => {
                format!(
                    "COPY {table} ({}, \"{SOURCE_COLUMN}\") FROM STDIN (FORMAT binary)",
                    data_columns.join(", ")
                )
            }
            LoadMode::Merge => {
                let index = format!("\"{}_{ROW_ID_COLUMN}\"", self.table.table);
                let typed: Vec<String> = self
                    .kind
                    .columns()
                    .iter()
                    .map(|col| format!("\"{}\" {}", pg_column(col.name), col.ty.postgres()))
                    .collect();
                let sql = format!(
                    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS \"{ROW_ID_COLUMN}\" text;
                     CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} (\"{ROW_ID_COLUMN}\");
                     CREATE TEMP TABLE {STAGING} ({}) ON COMMIT DROP;",
                    typed.join(", ")
                );
                c.batch_execute(&sql).await.map_err(|e| self.err(&e))?;
                format!(
                    "COPY {STAGING} ({}) FROM STDIN (FORMAT binary)",
                    data_columns.join(", ")
                )
            }
        };
        let sink = c
            .copy_in::<_, Bytes>(copy_sql.as_str())
            .await
            .map_err(|e| self.err(&e))?;
        self.copy = Some(Box::pin(sink));
        // Binary COPY header: signature, flags, header extension length.
        self.buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        self.buf.put_i32(0);
        self.buf.put_i32(0);
        Ok(self)
    }

    /// Refuse a table that does not have the columns this load writes (e.g. one created by another tool).
    async fn check_columns(&self) -> Result<()> {
        let rows = self
            .client
            .query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                &[&self.table.schema, &self.table.table],
            )
            .await
            .map_err(|e| self.err(&e))?;
        let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let missing: Vec<String> = self
            .kind
            .columns()
            .iter()
            .map(|c| pg_column(c.name))
            .chain([SOURCE_COLUMN.to_string()])
            .filter(|c| !have.contains(c))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(IngestError::Postgres {
            target: Some(self.target.clone()),
            message: format!(
                "the table exists without the columns of a tripline {} table (missing: {}): load with --mode replace \
                 to re-create it, or pick another --table",
                self.kind,
                missing.join(", ")
            ),
            domain: ErrorDomain::User,
        })
    }

    async fn flush(&mut self) -> Result<()> {
        let chunk = self.buf.split().freeze();
        let copy = self.copy.as_mut().expect("copy open");
        if let Err(e) = copy.send(chunk).await {
            return Err(pg_error(&self.target, &e));
        }
        Ok(())
    }
}

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Append a batch to a binary COPY buffer, row by row, adding `extra` as a trailing text column when given.
fn encode_batch(batch: &RecordBatch, kind: TripKind, extra: Option<&str>, buf: &mut BytesMut) {
    enum Col<'a> {
        I32(&'a Int32Array),
        I64(&'a Int64Array),
        F64(&'a Float64Array),
        Ts(&'a TimestampMicrosecondArray),
        Str(&'a StringArray),
    }
    let cols: Vec<Col> = kind
        .columns()
        .iter()
        .zip(batch.columns())
        .map(|(spec, a)| {
            let any = a.as_any();
            match spec.ty {
                ColumnType::Int32 => Col::I32(any.downcast_ref().expect("int32")),
                ColumnType::Int64 => Col::I64(any.downcast_ref().expect("int64")),
                ColumnType::Float64 => Col::F64(any.downcast_ref().expect("float64")),
                ColumnType::Timestamp => Col::Ts(any.downcast_ref().expect("timestamp")),
                ColumnType::Utf8 => Col::Str(any.downcast_ref().expect("utf8")),
            }
        })
        .collect();
    let nfields = (cols.len() + usize::from(extra.is_some())) as i16;
    for row in 0..batch.num_rows() {
        buf.put_i16(nfields);
        for col in &cols {
            let valid = match col {
                Col::I32(a) => a.is_valid(row),
                Col::I64(a) => a.is_valid(row),
                Col::F64(a) => a.is_valid(row),
                Col::Ts(a) => a.is_valid(row),
                Col::Str(a) => a.is_valid(row),
            };
            if !valid {
                buf.put_i32(-1);
                continue;
            }
            match col {
                Col::I32(a) => {
                    buf.put_i32(4);
                    buf.put_i32(a.value(row));
                }
                Col::I64(a) => {
                    buf.put_i32(8);
                    buf.put_i64(a.value(row));
                }
                Col::F64(a) => {
                    buf.put_i32(8);
                    buf.put_f64(a.value(row));
                }
                Col::Ts(a) => {
                    buf.put_i32(8);
                    buf.put_i64(a.value(row) - PG_EPOCH_OFFSET_MICROS);
                }
                Col::Str(a) => {
                    let s = a.value(row).as_bytes();
                    buf.put_i32(s.len() as i32);
                    buf.put_slice(s);
                }
            }
        }
        if let Some(extra) = extra {
            buf.put_i32(extra.len() as i32);
            buf.put_slice(extra.as_bytes());
        }
    }
}

impl SinkLoad for PostgresLoad {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let extra = (self.mode != LoadMode::Merge).then(|| self.source.clone());
        // Encode in slices so a buffer stays near 1 MiB however wide the batch.
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = 4096.min(batch.num_rows() - offset);
            encode_batch(
                &batch.slice(offset, len),
                self.kind,
                extra.as_deref(),
                &mut self.buf,
            );
            offset += len;
            if self.buf.len() >= 1 << 20 {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn commit(mut self, summary: &LoadSummary) -> Result<Committed> {
        self.buf.put_i16(-1);
        self.flush().await?;
        let mut copy = self.copy.take().expect("copy open");
        let copied = copy.as_mut().finish().await.map_err(|e| self.err(&e))?;
        let result = self.finish_transaction(copied, summary).await;
        if result.is_err() {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        result
    }

    async fn abort(mut self) {
        // Dropping the COPY stream without finishing it aborts the COPY; then the transaction is rolled back.
        self.copy.take();
        let _ = self.client.batch_execute("ROLLBACK").await;
    }
}

impl PostgresLoad {
    async fn finish_transaction(&self, copied: u64, summary: &LoadSummary) -> Result<Committed> {
        if copied != summary.account.written {
            return Err(IngestError::Postgres {
                target: Some(self.target.clone()),
                message: format!(
                    "COPY took {copied} rows but {} were sent",
                    summary.account.written
                ),
                domain: ErrorDomain::Internal,
            });
        }
        let c = &self.client;
        let table = self.table.quoted();
        let mut committed = Committed {
            target: self.table.to_string(),
            ..Default::default()
        };
        committed.replaced_rows = self.replaced_rows;
        if self.mode == LoadMode::Merge {
            let cols: Vec<String> = self
                .kind
                .columns()
                .iter()
                .map(|col| format!("\"{}\"", pg_column(col.name)))
                .collect();
            let key: Vec<String> = natural_key(self.kind)
                .iter()
                .map(|k| format!("coalesce(\"{}\"::text, '')", pg_column(k)))
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({cols}, \"{SOURCE_COLUMN}\", \"{ROW_ID_COLUMN}\")
                 SELECT DISTINCT ON (rid) {cols}, $1, rid
                 FROM (SELECT *, md5(concat_ws('|', {key})) AS rid FROM {STAGING}) s
                 ON CONFLICT (\"{ROW_ID_COLUMN}\") DO NOTHING",
                cols = cols.join(", "),
                key = key.join(", ")
            );
            let inserted = c
                .execute(&sql, &[&self.source])
                .await
                .map_err(|e| self.err(&e))?;
            committed.merged_new = Some(inserted);
            committed.merged_existing = Some(copied - inserted);
        }
        let a = summary.account;
        let mode = format!("{:?}", self.mode).to_lowercase();
        c.execute(
            &format!(
                "INSERT INTO {} (target_table, source, content_hash, mode, rows_read, rows_written, rows_quarantined)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (target_table, source) DO UPDATE SET content_hash = EXCLUDED.content_hash,
                   mode = EXCLUDED.mode, rows_read = EXCLUDED.rows_read, rows_written = EXCLUDED.rows_written,
                   rows_quarantined = EXCLUDED.rows_quarantined, loaded_at = now()",
                self.table.in_schema(LEDGER_TABLE)
            ),
            &[
                &self.table.to_string(),
                &self.source,
                &summary.content_hash,
                &mode,
                &(a.read as i64),
                &(a.written as i64),
                &(a.quarantined as i64),
            ],
        )
        .await
        .map_err(|e| self.err(&e))?;
        c.batch_execute("COMMIT").await.map_err(|e| self.err(&e))?;
        Ok(committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert_eq!(
            TableName::parse("Yellow_Taxi").unwrap().to_string(),
            "public.yellow_taxi"
        );
        assert_eq!(
            TableName::parse("ny.trips").unwrap().quoted(),
            "\"ny\".\"trips\""
        );
        assert!(TableName::parse("x; drop table y").is_err());
        assert!(TableName::parse("1abc").is_err());
    }

    #[test]
    fn binary_copy_rows_have_the_field_count_lengths_and_pg_epoch() {
        use std::sync::Arc;
        let kind = TripKind::Zones;
        let batch = RecordBatch::try_new(
            kind.schema(),
            vec![
                Arc::new(Int32Array::from(vec![Some(7)])),
                Arc::new(StringArray::from(vec![Some("Queens")])),
                Arc::new(StringArray::from(vec![None::<&str>])),
                Arc::new(StringArray::from(vec![Some("Boro Zone")])),
            ],
        )
        .unwrap();
        let mut buf = BytesMut::new();
        encode_batch(&batch, kind, Some("src"), &mut buf);
        let mut expected = Vec::new();
        expected.extend(5i16.to_be_bytes());
        expected.extend(4i32.to_be_bytes());
        expected.extend(7i32.to_be_bytes());
        expected.extend(6i32.to_be_bytes());
        expected.extend(b"Queens");
        expected.extend((-1i32).to_be_bytes());
        expected.extend(9i32.to_be_bytes());
        expected.extend(b"Boro Zone");
        expected.extend(3i32.to_be_bytes());
        expected.extend(b"src");
        assert_eq!(&buf[..], &expected[..]);
        assert_eq!(
            PG_EPOCH_OFFSET_MICROS,
            tripline_core::time::parse_timestamp("2000-01-01 00:00:00").unwrap()
        );
    }
}
