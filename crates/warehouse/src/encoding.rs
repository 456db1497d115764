//! Parquet encoding chosen from the data a writer is about to write.
//!
//! The Parquet writer dictionary-encodes every column until a column chunk's dictionary outgrows its page limit
//! (1 MiB), then falls back to plain encoding. For a column whose values hardly repeat (a surrogate key, a
//! microsecond timestamp) that is pure cost: every value is hashed and interned, a row group of timestamps fits
//! the limit whole and is stored as a dictionary as large as the column plus the indices, and the fallback happens
//! again at every row group. parquet-mr decides the same question at its first page (it keeps the dictionary only if
//! dictionary plus indices are smaller than the plain values); here the writer decides it before it starts, from
//! the first batch it is given.

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Fewer non-null values than this in a sample say too little about a column: its dictionary stays on (the writer
/// still falls back if the dictionary overflows).
const MIN_SAMPLE_VALUES: usize = 1024;

/// `base` with dictionary encoding turned off for the top-level columns of `sample` whose values repeat too little
/// for a dictionary to make them smaller: distinct values plus one index per value, against the plain values.
pub(crate) fn fit_dictionary(base: &WriterProperties, sample: &RecordBatch) -> WriterProperties {
    let plain: Vec<&str> = sample
        .schema_ref()
        .fields()
        .iter()
        .zip(sample.columns())
        .filter(|(field, column)| {
            base.dictionary_enabled(&ColumnPath::from(field.name().as_str()))
                && !dictionary_pays(column)
        })
        .map(|(field, _)| field.name().as_str())
        .collect();
    if plain.is_empty() {
        return base.clone();
    }
    plain
        .into_iter()
        .fold(base.clone().into_builder(), |builder, name| {
            builder.set_column_dictionary_enabled(ColumnPath::from(name), false)
        })
        .build()
}

/// Whether a dictionary would make `column`'s values smaller than plain encoding, judged on the values at hand.
/// Columns of types the estimate does not cover (nested, boolean) keep the writer's default.
fn dictionary_pays(column: &ArrayRef) -> bool {
    let values = column.len() - column.null_count();
    if values < MIN_SAMPLE_VALUES {
        return true;
    }
    let Some(plain_bytes) = plain_size(column, values) else {
        return true;
    };
    let mut hashes = vec![0u64; column.len()];
    if create_hashes([column], &RandomState::with_seed(0), &mut hashes).is_err() {
        return true;
    }
    let distinct: HashSet<u64> = match column.logical_nulls() {
        Some(nulls) => hashes
            .iter()
            .zip(nulls.iter())
            .filter_map(|(h, valid)| valid.then_some(*h))
            .collect(),
        None => hashes.into_iter().collect(),
    };
    let distinct = distinct.len();
    // Each index is bit-packed at the width of the largest index.
    let index_bits = usize::BITS - distinct.leading_zeros();
    let dictionary_bytes = plain_bytes * distinct / values + values * index_bits as usize / 8;
    dictionary_bytes < plain_bytes
}

/// The bytes `column`'s `values` non-null values take plain-encoded (about: decimals counted at their Arrow width).
fn plain_size(column: &ArrayRef, values: usize) -> Option<usize> {
    let bytes = match column.data_type() {
        DataType::Utf8 => byte_len(column.as_string::<i32>().value_offsets()) + 4 * values,
        DataType::LargeUtf8 => byte_len(column.as_string::<i64>().value_offsets()) + 4 * values,
        DataType::Binary => byte_len(column.as_binary::<i32>().value_offsets()) + 4 * values,
        DataType::LargeBinary => byte_len(column.as_binary::<i64>().value_offsets()) + 4 * values,
        DataType::Utf8View => {
            let a = column.as_string_view();
            a.lengths().map(|l| l as usize).sum::<usize>() + 4 * values
        }
        DataType::BinaryView => {
            let a = column.as_binary_view();
            a.lengths().map(|l| l as usize).sum::<usize>() + 4 * values
        }
        DataType::Boolean => return None,
        other => other.primitive_width()? * values,
    };
    Some(bytes)
}

/// The bytes between the first and last of `offsets`.
fn byte_len<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> usize {
    match (offsets.first(), offsets.last()) {
        (Some(first), Some(last)) => (*last - *first).as_usize(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, StringArray};
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

    fn dictionary(props: &WriterProperties, column: &str) -> bool {
        props.dictionary_enabled(&ColumnPath::from(column))
    }

    #[test]
    fn near_unique_columns_are_written_plain_and_repeating_ones_keep_their_dictionary() {
        let n = 8192;
        let sample = batch(vec![
            (
                "ts",
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 1_000_003))),
            ),
            (
                "key",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("{i:032x}")),
                )),
            ),
            (
                "zone",
                Arc::new(Int32Array::from_iter_values(
                    (0..n).map(|i| (i % 265) as i32),
                )),
            ),
            (
                "flag",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| if i % 7 == 0 { "Y" } else { "N" }),
                )),
            ),
            // Half the values repeat: a dictionary of 4096 i64 plus 13-bit indices is still smaller than plain.
            (
                "half",
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i / 2))),
            ),
        ]);
        let props = fit_dictionary(&WriterProperties::new(), &sample);
        assert!(!dictionary(&props, "ts"));
        assert!(!dictionary(&props, "key"));
        assert!(dictionary(&props, "zone"));
        assert!(dictionary(&props, "flag"));
        assert!(dictionary(&props, "half"));
    }

    #[test]
    fn nulls_do_not_count_and_small_samples_or_disabled_columns_are_left_alone() {
        // 911 distinct values among 8192 mostly-null rows: too few values to judge, the default stays; 2048
        // distinct values among as many nulls are judged on the values alone.
        let sparse: Int64Array = (0..8192).map(|i| (i % 9 == 0).then_some(i)).collect();
        let half_null: Int64Array = (0..4096).map(|i| (i % 2 == 0).then_some(i)).collect();
        let sample = batch(vec![("sparse", Arc::new(sparse) as ArrayRef)]);
        assert!(dictionary(
            &fit_dictionary(&WriterProperties::new(), &sample),
            "sparse"
        ));
        let sample = batch(vec![("half_null", Arc::new(half_null) as ArrayRef)]);
        assert!(!dictionary(
            &fit_dictionary(&WriterProperties::new(), &sample),
            "half_null"
        ));
        let tiny = batch(vec![(
            "tiny",
            Arc::new(Int64Array::from_iter_values(0..100)) as ArrayRef,
        )]);
        assert!(dictionary(
            &fit_dictionary(&WriterProperties::new(), &tiny),
            "tiny"
        ));

        // A column the table's settings write without a dictionary stays without one.
        let repeating = batch(vec![(
            "zone",
            Arc::new(Int32Array::from_iter_values((0..8192).map(|i| i % 265))) as ArrayRef,
        )]);
        let off = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .build();
        assert!(!dictionary(&fit_dictionary(&off, &repeating), "zone"));
    }
}
