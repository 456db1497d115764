//! `md5(text)` for the embedded warehouse, as PostgreSQL has it (lower-case hex): `dbt.hash` and
//! `dbt_utils.generate_surrogate_key` compile to it. DataFusion ships md5 only behind its crypto feature, which the
//! workspace leaves off; this is the one function dbt projects need from it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility};
use md5::{Digest, Md5};

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn md5_of(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let input: ArrayRef = arrow::compute::cast(&arrays[0], &DataType::Utf8)
        .map_err(|e| DataFusionError::Execution(format!("md5: {e}")))?;
    let strings = input
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Execution("md5: argument is not text".into()))?;
    let mut out = StringBuilder::with_capacity(strings.len(), strings.len() * 32);
    for i in 0..strings.len() {
        if strings.is_null(i) {
            out.append_null();
        } else {
            out.append_value(hex(&Md5::digest(strings.value(i).as_bytes())));
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
