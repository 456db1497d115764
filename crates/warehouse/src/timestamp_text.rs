//! `CAST(ts AS VARCHAR)` of a timestamp without a time zone, written the way PostgreSQL, DuckDB and Spark write it:
//! `2024-01-01 00:40:05`, fractional seconds only when there are any, without trailing zeros
//! (`2024-01-01 00:40:05.5`).
//!
//! Arrow's cast writes `2024-01-01T00:40:05` through chrono's formatter, value by value. The text matters beyond
//! looks: dbt's `generate_surrogate_key` hashes `cast(pickup_datetime as text)`, so with Arrow's text a trip's key
//! differed between the embedded warehouse and PostgreSQL; and the formatting was a fifth of the time of a staging
//! model's uniqueness test. Here the date part is computed once per day (consecutive trips share it) and the time
//! of day by integer arithmetic.

use std::fmt::Write as _;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, LargeStringBuilder, PrimitiveArray, StringBuilder, StringViewBuilder,
};
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::{DFSchema, Result, exec_err};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use tripline_core::time::civil_from_days;

use crate::fast_dates::on_argument;

/// `CAST(ts AS <text type>)` (or `TRY_CAST`) of a zone-less timestamp as [`timestamp_to_text`].
pub(crate) fn text_cast(e: &Expr, schema: &DFSchema) -> Option<Expr> {
    let (inner, to) = match e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            (expr.as_ref(), field.data_type())
        }
        _ => return None,
    };
    if !matches!(
        to,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return None;
    }
    if !matches!(inner.get_type(schema).ok()?, DataType::Timestamp(_, None)) {
        return None;
    }
    Some(Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(timestamp_to_text(to.clone())),
        vec![inner.clone()],
    )))
}

/// The text of a zone-less timestamp as `to` (`Utf8`, `LargeUtf8` or `Utf8View`).
pub(crate) fn timestamp_to_text(to: DataType) -> ScalarUDF {
    ScalarUDF::new_from_impl(TimestampToText {
        to,
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// See [`timestamp_to_text`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimestampToText {
    to: DataType,
    signature: Signature,
}

/// Appends text to one of the three string builders.
trait TextOut {
    fn push(&mut self, s: &str);
    fn null(&mut self);
    fn done(self) -> ArrayRef;
}

macro_rules! text_out {
    ($($builder:ty),*) => {$(
        impl TextOut for $builder {
            fn push(&mut self, s: &str) {
                self.append_value(s)
            }
            fn null(&mut self) {
                self.append_null()
            }
            fn done(mut self) -> ArrayRef {
                Arc::new(self.finish())
            }
        }
    )*};
}

text_out!(StringBuilder, LargeStringBuilder, StringViewBuilder);

/// Writes `v` (`PER_SECOND` units a second) into `out`; `day` caches the last day's `YYYY-MM-DD ` prefix.
fn format_into<const PER_SECOND: i64>(v: i64, day: &mut (i64, String), out: &mut String) {
    let seconds = v.div_euclid(PER_SECOND);
    let fraction = v.rem_euclid(PER_SECOND);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    if day.0 != days || day.1.is_empty() {
        let (y, m, d) = civil_from_days(days);
        day.1.clear();
        if (0..=9999).contains(&y) {
            let _ = write!(day.1, "{y:04}-{m:02}-{d:02} ");
        } else {
            // Beyond four digits PostgreSQL prints the digits there are; so does this.
            let _ = write!(day.1, "{y}-{m:02}-{d:02} ");
        }
        day.0 = days;
    }
    out.clear();
    out.push_str(&day.1);
    let (h, mi, s) = (of_day / 3_600, of_day / 60 % 60, of_day % 60);
    let digits = [
        b'0' + (h / 10) as u8,
        b'0' + (h % 10) as u8,
        b':',
        b'0' + (mi / 10) as u8,
        b'0' + (mi % 10) as u8,
        b':',
        b'0' + (s / 10) as u8,
        b'0' + (s % 10) as u8,
    ];
    out.push_str(std::str::from_utf8(&digits).expect("ASCII digits"));
    if fraction != 0 {
        let width = match PER_SECOND {
            1_000 => 3,
            1_000_000 => 6,
            _ => 9,
        };
        let _ = write!(out, ".{fraction:0width$}");
        while out.ends_with('0') {
            out.pop();
        }
    }
}

fn text_of<T: ArrowTimestampType, const PER_SECOND: i64, B: TextOut>(
    array: &dyn Array,
    mut builder: B,
) -> Result<ArrayRef> {
    let Some(array) = array.as_any().downcast_ref::<PrimitiveArray<T>>() else {
        return exec_err!("unexpected array type {}", array.data_type());
    };
    let mut day = (0, String::new());
    let mut text = String::with_capacity(32);
    for v in array.iter() {
        match v {
            Some(v) => {
                format_into::<PER_SECOND>(v, &mut day, &mut text);
                builder.push(&text);
            }
            None => builder.null(),
        }
    }
    Ok(builder.done())
}

fn text_with<B: TextOut>(array: &dyn Array, builder: B) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, None) => {
            text_of::<TimestampSecondType, 1, B>(array, builder)
        }
        DataType::Timestamp(TimeUnit::Millisecond, None) => {
            text_of::<TimestampMillisecondType, 1_000, B>(array, builder)
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            text_of::<TimestampMicrosecondType, 1_000_000, B>(array, builder)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, None) => {
            text_of::<TimestampNanosecondType, 1_000_000_000, B>(array, builder)
        }
        other => exec_err!("CAST(.. AS VARCHAR) of a timestamp without time zone, got {other}"),
    }
}

impl ScalarUDFImpl for TimestampToText {
    fn name(&self) -> &str {
        "timestamp_to_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.to.clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(Field::new(self.name(), self.to.clone(), nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        on_argument(args, |a| {
            let n = a.len();
            match self.to {
                DataType::LargeUtf8 => text_with(a, LargeStringBuilder::with_capacity(n, n * 19)),
                DataType::Utf8View => text_with(a, StringViewBuilder::with_capacity(n)),
                _ => text_with(a, StringBuilder::with_capacity(n, n * 19)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, TimestampMicrosecondArray, TimestampNanosecondArray};

    fn texts(array: ArrayRef) -> Vec<Option<String>> {
        let out = text_with(
            array.as_ref(),
            StringBuilder::with_capacity(array.len(), 64),
        )
        .unwrap();
        out.as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect()
    }

    #[test]
    fn timestamps_are_written_like_postgres() {
        let day = 86_400_000_000_i64;
        let micros: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_704_069_605_000_000), // 2024-01-01 00:40:05
            Some(1_704_069_605_500_000),
            Some(1_704_069_605_000_123),
            Some(1_704_069_605_000_123), // the cached day
            Some(0),
            Some(-1),
            Some(11_016 * day + day - 1),
            None,
            Some(-719_162 * day), // 0001-01-01
        ]));
        assert_eq!(
            texts(micros),
            vec![
                Some("2024-01-01 00:40:05".into()),
                Some("2024-01-01 00:40:05.5".into()),
                Some("2024-01-01 00:40:05.000123".into()),
                Some("2024-01-01 00:40:05.000123".into()),
                Some("1970-01-01 00:00:00".into()),
                Some("1969-12-31 23:59:59.999999".into()),
                Some("2000-02-29 23:59:59.999999".into()),
                None,
                Some("0001-01-01 00:00:00".into()),
            ]
        );
        let nanos: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![Some(1_000_000_001)]));
        assert_eq!(
            texts(nanos),
            vec![Some("1970-01-01 00:00:01.000000001".into())]
        );
    }

    #[test]
    fn every_second_of_two_days_matches_chrono() {
        // Across a day change and before the epoch, against chrono's own formatting.
        let start = -86_400_i64 - 3_600;
        let values: Vec<i64> = (start..start + 2 * 86_400)
            .map(|s| s * 1_000_000 + 250_000)
            .collect();
        let array: ArrayRef = Arc::new(TimestampMicrosecondArray::from(values.clone()));
        let got = texts(array);
        for (v, got) in values.iter().zip(got) {
            let want = chrono::DateTime::from_timestamp_micros(*v)
                .unwrap()
                .naive_utc()
                .format("%Y-%m-%d %H:%M:%S%.f")
                .to_string();
            // chrono writes .250000 / .250; PostgreSQL trims: compare without trailing zeros.
            let want = want.trim_end_matches('0').to_string();
            assert_eq!(got.as_deref(), Some(want.as_str()), "{v}");
        }
    }
}
