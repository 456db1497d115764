//! BigQuery's `DATE(x)`: the date of a timestamp (or a date string). The planner rewrites it to
//! `CAST(x AS DATE)`, so filters written the BigQuery way stay simple casts the optimizer understands.

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The `date` scalar function.
pub fn date() -> ScalarUDF {
    ScalarUDF::new_from_impl(DateFunction {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFunction {
    signature: Signature,
}

impl ScalarUDFImpl for DateFunction {
    fn name(&self) -> &str {
        "date"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arg = args
            .args
            .into_iter()
            .next()
            .expect("signature has one argument");
        Ok(match arg {
            ColumnarValue::Array(a) => ColumnarValue::Array(cast(&a, &DataType::Date32)?),
            ColumnarValue::Scalar(s) => ColumnarValue::Scalar(s.cast_to(&DataType::Date32)?),
        })
    }

    fn simplify(&self, mut args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let arg = args.pop().expect("signature has one argument");
        Ok(ExprSimplifyResult::Simplified(Expr::Cast(Cast::new(
            Box::new(arg),
            DataType::Date32,
        ))))
    }
}
