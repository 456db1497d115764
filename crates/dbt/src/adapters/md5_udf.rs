//! `md5(text)` for the embedded warehouse, as PostgreSQL has it (lower-case hex): `dbt.hash` and
//! `dbt_utils.generate_surrogate_key` compile to it. DataFusion ships md5 only behind its crypto feature, which the
//! workspace leaves off; this is the one function dbt projects need from it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility};
use md5::{Digest, Md5};

/// The lower-case hex digits of `bytes` (a 16-byte digest) in `out`.
fn hex_into(bytes: &[u8], out: &mut [u8; 32]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
}

/// The digests of `strings` (each `Option<&str>`) into `out`.
fn digests<'a>(strings: impl Iterator<Item = Option<&'a str>>, out: &mut StringBuilder) {
    let mut hex = [0u8; 32];
    for s in strings {
        match s {
            None => out.append_null(),
            Some(s) => {
                hex_into(&Md5::digest(s.as_bytes()), &mut hex);
                out.append_value(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
            }
        }
    }
}

fn md5_of(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let input = &arrays[0];
    let mut out = StringBuilder::with_capacity(input.len(), input.len() * 32);
    match input.data_type() {
        DataType::Utf8 => digests(input.as_string::<i32>().iter(), &mut out),
        DataType::LargeUtf8 => digests(input.as_string::<i64>().iter(), &mut out),
        DataType::Utf8View => digests(input.as_string_view().iter(), &mut out),
        _ => {
            let text: ArrayRef = arrow::compute::cast(input, &DataType::Utf8)
                .map_err(|e| DataFusionError::Execution(format!("md5: {e}")))?;
            digests(text.as_string::<i32>().iter(), &mut out)
        }
    }
    let result: ArrayRef = Arc::new(out.finish());
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        return Ok(ColumnarValue::Scalar(
            datafusion::scalar::ScalarValue::try_from_array(&result, 0)?,
        ));
    }
    Ok(ColumnarValue::Array(result))
}

/// The `md5` scalar function.
pub(crate) fn md5_udf() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "md5",
        Signature::string(1, Volatility::Immutable),
        DataType::Utf8,
        Arc::new(md5_of),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_lower_case_hex_like_postgres() {
        let v = md5_of(&[ColumnarValue::Scalar(
            datafusion::scalar::ScalarValue::Utf8(Some("a".into())),
        )])
        .unwrap();
        match v {
            ColumnarValue::Scalar(s) => {
                assert_eq!(s.to_string(), "0cc175b9c0f1b6a831c399e269772661")
            }
            other => panic!("{other:?}"),
        }
    }
}
