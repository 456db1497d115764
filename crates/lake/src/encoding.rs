//! Parquet encodings chosen from the data a writer is about to write.
//!
//! The Parquet writer's defaults treat every column alike: dictionary-encode until a column chunk's dictionary
//! outgrows its page limit (1 MiB), then fall back to plain; compress every page with the file's codec. For much of
//! what this project writes both are pure cost:
//! - **Dictionaries of values that hardly repeat.** A microsecond timestamp or a surrogate key is hashed and
//!   interned value by value, and a 131k-row row group of timestamps fits the dictionary limit whole, so it is stored
//!   as a dictionary as large as the column plus an index per row (9 bytes a row instead of 8). parquet-mr decides
//!   this at a column's first page (it keeps the dictionary only if dictionary plus indices are smaller than the
//!   plain values).
//! - **Compression that saves almost nothing.** Plain timestamps in random order, bit-packed dictionary indices of a
//!   zone id, doubles with many distinct values: Snappy shrinks them by 0-10% and every reader pays the
//!   decompression of every page (a sixth of a group-by's CPU over the raw trips, measured). Such a column is stored
//!   uncompressed; a column the codec shrinks by more than [`MIN_COMPRESSION_SAVING_PERCENT`] keeps it.
//!
//! Both questions are answered by asking the writer itself: the start of the first batch is encoded in memory with
//! and without dictionaries, each compressed and not. Each column gets the encoding whose pages are smaller, and the
//! codec only where it pays at the size of a row group: the sample's data pages are scaled up to a row group's
//! rows, its dictionary page is not (a small sample's dictionary is a large share of it, and dictionaries of numbers
//! compress better than the bit-packed indices that make up a full row group). Exact per page for every type the
//! writer supports (nested columns decide leaf by leaf), and a few milliseconds per file.

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::{DEFAULT_MAX_ROW_GROUP_ROW_COUNT, WriterProperties};
use parquet::schema::types::ColumnPath;

/// Fewer rows than this in a sample say too little about a column: the writer's defaults stay.
pub const MIN_SAMPLE_ROWS: usize = 1024;

/// Rows of the sample that are encoded (the first ones of the batch): enough for Snappy's 64 KiB blocks and for the
/// repetition a dictionary would catch.
const SAMPLE_ROWS: usize = 16_384;

/// A codec is kept for a column only if it makes the column's pages at least this much smaller (percent).
pub const MIN_COMPRESSION_SAVING_PERCENT: i64 = 20;

/// `base` with each top-level or leaf column of `sample` given the encoding and compression that suit its values:
/// dictionary only where it makes the encoded pages smaller than plain values, and `base`'s codec only where it
/// saves at least [`MIN_COMPRESSION_SAVING_PERCENT`] of the encoded pages. Columns `base` already configures without
/// a dictionary or without compression keep that. A sample too small to judge, or one the writer cannot encode,
/// gives `base` back unchanged (the writer will report its own error when it writes).
pub fn fit_encodings(base: &WriterProperties, sample: &RecordBatch) -> WriterProperties {
    if sample.num_rows() < MIN_SAMPLE_ROWS {
        return base.clone();
    }
    let sample = sample.slice(0, sample.num_rows().min(SAMPLE_ROWS));
    let uncompressed = |props: WriterProperties| {
        props
            .into_builder()
            .set_compression(Compression::UNCOMPRESSED)
            .build()
    };
    let without_dictionary = base
        .clone()
        .into_builder()
        .set_dictionary_enabled(false)
        .build();
    let (Some(dict), Some(dict_raw), Some(plain), Some(plain_raw)) = (
        encode(base, &sample),
        encode(&uncompressed(base.clone()), &sample),
        encode(&without_dictionary, &sample),
        encode(&uncompressed(without_dictionary.clone()), &sample),
    ) else {
        return base.clone();
    };
    // A row group holds this many times the sample's rows: its data pages grow with it, its dictionary page
    // (written once per row group) much less.
    // (Unlimited row groups are counted at the writer's default limit.)
    let row_group_rows = base
        .max_row_group_row_count()
        .unwrap_or(DEFAULT_MAX_ROW_GROUP_ROW_COUNT);
    let scale = (row_group_rows as f64 / sample.num_rows() as f64).max(1.0);

    let mut builder = base.clone().into_builder();
    let mut changed = false;
    let sizes = chunk_sizes(&dict)
        .into_iter()
        .zip(chunk_sizes(&dict_raw))
        .zip(chunk_sizes(&plain).into_iter().zip(chunk_sizes(&plain_raw)));
    for ((d, d_raw), (p, p_raw)) in sizes {
        let path = d.path.clone();
        let keep_dictionary = base.dictionary_enabled(&path) && d_raw.total() < p_raw.total();
        if base.dictionary_enabled(&path) && !keep_dictionary {
            builder = builder.set_column_dictionary_enabled(path.clone(), false);
            changed = true;
        }
        let (compressed, raw) = if keep_dictionary {
            (d, d_raw)
        } else {
            (p, p_raw)
        };
        if base.compression(&path) != Compression::UNCOMPRESSED
            && !compression_pays(compressed.at_scale(scale), raw.at_scale(scale))
        {
            builder = builder.set_column_compression(path, Compression::UNCOMPRESSED);
            changed = true;
        }
    }
    if changed {
        builder.build()
    } else {
        base.clone()
    }
}

/// Whether compressed pages of `compressed` bytes are worth their decompression against `uncompressed` bytes.
fn compression_pays(compressed: f64, uncompressed: f64) -> bool {
    compressed * 100.0 <= uncompressed * (100 - MIN_COMPRESSION_SAVING_PERCENT) as f64
}

/// `sample` written in memory with `props`; its footer.
fn encode(props: &WriterProperties, sample: &RecordBatch) -> Option<ParquetMetaData> {
    let mut writer = ArrowWriter::try_new(Vec::new(), sample.schema(), Some(props.clone())).ok()?;
    writer.write(sample).ok()?;
    writer.close().ok()
}

/// A column chunk's bytes, as stored: its dictionary page (if any) and its data pages.
struct ChunkSize {
    path: ColumnPath,
    dictionary: i64,
    data: i64,
}

impl ChunkSize {
    fn total(&self) -> i64 {
        self.dictionary + self.data
    }

    /// The bytes of a chunk with `scale` times the rows: the data pages grow in proportion, the dictionary page
    /// is counted once (it grows only with new distinct values).
    fn at_scale(&self, scale: f64) -> f64 {
        self.dictionary as f64 + self.data as f64 * scale
    }
}

/// Each leaf column's stored bytes over the file's row groups.
fn chunk_sizes(meta: &ParquetMetaData) -> Vec<ChunkSize> {
    let mut out: Vec<ChunkSize> = Vec::new();
    for row_group in meta.row_groups() {
        for (i, column) in row_group.columns().iter().enumerate() {
            // The dictionary page comes first in the chunk; the data pages start after it.
            let dictionary = column
                .dictionary_page_offset()
                .map_or(0, |at| (column.data_page_offset() - at).max(0));
            let data = column.compressed_size() - dictionary;
            match out.get_mut(i) {
                Some(size) => {
                    size.dictionary += dictionary;
                    size.data += data;
                }
                None => out.push(ChunkSize {
                    path: column.column_path().clone(),
                    dictionary,
                    data,
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn snappy() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build()
    }

    fn dictionary(props: &WriterProperties, column: &str) -> bool {
        props.dictionary_enabled(&ColumnPath::from(column))
    }

    fn compressed(props: &WriterProperties, column: &str) -> bool {
        props.compression(&ColumnPath::from(column)) != Compression::UNCOMPRESSED
    }

    /// A deterministic scramble of `i` (a 64-bit mix), so "random" columns are the same in every run.
    fn mix(i: u64) -> u64 {
        let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    #[test]
    fn each_column_gets_the_encoding_and_codec_its_values_pay_for() {
        let n = 8192u64;
        // A month of second-resolution timestamps in random order: unique, and their bytes barely compress.
        let month_us = 31 * 86_400 * 1_000_000i64;
        let ts = Int64Array::from_iter_values((0..n).map(|i| {
            1_672_531_200_000_000 + (mix(i) as i64).rem_euclid(month_us) / 1_000_000 * 1_000_000
        }));
        let sample = batch(vec![
            ("ts", Arc::new(ts)),
            // A surrogate key: unique text that Snappy does shrink (hex digits).
            (
                "key",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("{:032x}", mix(i))),
                )),
            ),
            // A zone id: 265 values in random order; its bit-packed indices do not compress.
            (
                "zone",
                Arc::new(Int32Array::from_iter_values(
                    (0..n).map(|i| (mix(i) % 265) as i32),
                )),
            ),
            // A constant: dictionary, and its run-length-encoded indices compress.
            (
                "flag",
                Arc::new(StringArray::from_iter_values((0..n).map(|_| "N"))),
            ),
            // Amounts in cents with a long tail: repeat enough for a dictionary.
            (
                "amount",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| (mix(i) % 5000) as f64 / 100.0),
                )),
            ),
        ]);
        let props = fit_encodings(&snappy(), &sample);
        assert!(!dictionary(&props, "ts"));
        assert!(!compressed(&props, "ts"));
        assert!(!dictionary(&props, "key"));
        assert!(compressed(&props, "key"));
        assert!(dictionary(&props, "zone"));
        assert!(!compressed(&props, "zone"));
        assert!(dictionary(&props, "flag"));
        assert!(dictionary(&props, "amount"));
    }

    #[test]
    fn small_samples_and_settings_already_made_are_left_alone() {
        let tiny = batch(vec![(
            "ts",
            Arc::new(Int64Array::from_iter_values(
                (0..100).map(|i| mix(i) as i64),
            )),
        )]);
        let props = fit_encodings(&snappy(), &tiny);
        assert!(dictionary(&props, "ts"));
        assert!(compressed(&props, "ts"));

        // Without a dictionary and uncompressed by choice: nothing is turned back on.
        let base = WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .set_dictionary_enabled(false)
            .build();
        let repeating = batch(vec![(
            "zone",
            Arc::new(Int32Array::from_iter_values((0..8192).map(|i| i % 7))),
        )]);
        let props = fit_encodings(&base, &repeating);
        assert!(!dictionary(&props, "zone"));
        assert!(!compressed(&props, "zone"));
    }

    #[test]
    fn nulls_count_as_the_writer_stores_them() {
        // Mostly null, the rest unique: the writer stores only the non-null values either way.
        let values: Int64Array = (0..8192u64)
            .map(|i| (i % 10 == 0).then(|| mix(i) as i64))
            .collect();
        let props = fit_encodings(&snappy(), &batch(vec![("v", Arc::new(values))]));
        assert!(!dictionary(&props, "v"));
    }
}
