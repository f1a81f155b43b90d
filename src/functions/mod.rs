//! Flink's built-in functions where DataFusion's differ, as vectorised DataFusion UDFs.
//!
//! weir plans SQL with DataFusion, whose function library is PostgreSQL-flavoured. Where a
//! function of the same name answers differently from Flink's, the one registered here wins:
//!
//! - [`string`]: `REGEXP_REPLACE` (every match, literal replacement, NULL for a bad pattern),
//!   `REGEXP_EXTRACT` (one group copied out; NULL where Flink answers NULL),
//!   `CHR` (the low 8 bits), `LEFT`/`RIGHT` (a negative length gives `''`);
//! - `CAST(x AS STRING)`: Flink's text for TIMESTAMP and BOOLEAN (the planner rewrites string
//!   casts to [`string::CAST_TO_STRING`]);
//! - [`time`]: `TO_TIMESTAMP` / `TO_DATE` with Java date patterns, NULL for a string that
//!   does not parse; `DATE_FORMAT` as DataFusion's `to_char`, its pattern parsed once per
//!   batch;
//! - [`flink`]: functions DataFusion lacks (LOCATE, TIMESTAMPDIFF, JSON_VALUE, PARSE_URL,
//!   SHA2, TYPEOF, …);
//! - [`rowwise`]: more of them, each a plain row-wise body (TO_BASE64, HEX, IS_DIGIT, ENCODE,
//!   SHA1, SIGN, STR_TO_MAP, ELEMENT, JSON_STRING, JSON_ARRAY, CONVERT_TZ, …), with [`zone`]
//!   for time-zone names;
//! - `ARRAY_REMOVE` removes every equal element (DataFusion's `array_remove_all`);
//! - [`aggregate`]: `AVG` and `SUM` keep an integer (or FLOAT) argument's type, as Flink's
//!   do, instead of widening to DOUBLE / BIGINT;
//! - `PROCTIME()`, `CURRENT_TIMESTAMP`, `NOW()`, `LOCALTIMESTAMP`: the wall clock when a batch
//!   is processed, not a constant folded at planning;
//! - [`CurrentWatermark`]: `CURRENT_WATERMARK(rowtime)`, the watermark the evaluating operator
//!   has seen (the runtime's chain sets it around each batch, [`with_watermark`]);
//! - [`json_agg`]: `JSON_ARRAYAGG` and `JSON_OBJECTAGG`.
//!
//! [`register`] installs them in a session: the planner's, and any batch session that should
//! answer like weir (the differential tests' reference does this).

pub mod aggregate;
pub mod flink;
pub mod json_agg;
pub mod rowwise;
pub mod string;
pub mod time;
pub mod zone;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    AggregateUDF, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// Register weir's functions in `ctx`, replacing DataFusion's of the same names.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(Clock::new(false)));
    ctx.register_udf(ScalarUDF::from(Clock::new(true)));
    ctx.register_udf(ScalarUDF::from(string::RegexpReplace::default()));
    ctx.register_udf(ScalarUDF::from(string::RegexpExtract::default()));
    ctx.register_udf(ScalarUDF::from(string::Chr::default()));
    ctx.register_udf(ScalarUDF::from(time::ParseTime::timestamp()));
    ctx.register_udf(ScalarUDF::from(time::ParseTime::date()));
    ctx.register_udf(ScalarUDF::from(time::DateFormat::default()));
    register_zone(ctx, "UTC");
    ctx.register_udf(ScalarUDF::from(string::LeftRight::left()));
    ctx.register_udf(ScalarUDF::from(string::LeftRight::right()));
    let remove_all = datafusion::functions_nested::remove::array_remove_all_udf();
    ctx.register_udf(remove_all.as_ref().clone().with_aliases(["array_remove"]));
    flink::register(ctx);
    rowwise::register(ctx);
    ctx.register_udaf(AggregateUDF::from(aggregate::SameType::avg()));
    ctx.register_udaf(AggregateUDF::from(aggregate::SameType::sum()));
    for f in aggregate::SameType::spreads() {
        ctx.register_udaf(AggregateUDF::from(f));
    }
    for f in json_agg::JsonAgg::all() {
        ctx.register_udaf(AggregateUDF::from(f));
    }
    ctx.register_udf(ScalarUDF::from(CurrentWatermark::default()));
}

/// The functions that depend on the session time zone (`'table.local-time-zone'`), for the
/// zone named `zone`: `CAST(ltz AS STRING)` and `weir_local` (HOUR, DATE_FORMAT, … of a
/// TIMESTAMP_LTZ).
pub fn register_zone(ctx: &SessionContext, zone: &str) {
    ctx.register_udf(ScalarUDF::from(string::CastToString::in_zone(zone)));
    ctx.register_udf(ScalarUDF::from(zone::Local::new(zone)));
}

/// Evaluate a row-wise function over its arguments as arrays (scalars broadcast). When every
/// argument is a scalar the answer is a scalar, so constant folding keeps working.
pub(crate) fn map_rows(
    args: &ScalarFunctionArgs,
    f: impl Fn(&[ArrayRef]) -> datafusion::error::Result<ArrayRef>,
) -> datafusion::error::Result<ColumnarValue> {
    let scalar = args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let out = f(&arrays)?;
    if scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}

thread_local! {
    /// The watermark the operator evaluating an expression on this thread has seen.
    static WATERMARK: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// Run `f` with `wm` as the current watermark, what `CURRENT_WATERMARK` answers inside it.
pub(crate) fn with_watermark<R>(wm: Option<i64>, f: impl FnOnce() -> R) -> R {
    let old = WATERMARK.with(|w| w.replace(wm));
    let r = f();
    WATERMARK.with(|w| w.set(old));
    r
}

/// `CURRENT_WATERMARK(rowtime)`: the watermark of the operator evaluating it, in the type of
/// the time attribute (millisecond precision), or NULL before its first watermark, as in
/// Flink. Flink's documented use filters late rows: `WHERE CURRENT_WATERMARK(ts) IS NULL OR
/// ts > CURRENT_WATERMARK(ts)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CurrentWatermark {
    signature: Signature,
}

impl Default for CurrentWatermark {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for CurrentWatermark {
    fn name(&self) -> &str {
        "current_watermark"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        match args {
            [DataType::Timestamp(_, tz)] => {
                Ok(DataType::Timestamp(TimeUnit::Millisecond, tz.clone()))
            }
            other => datafusion::common::plan_err!(
                "CURRENT_WATERMARK takes the table's event-time column, not {other:?}"
            ),
        }
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let tz = match args.return_field.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let wm = WATERMARK
            .with(|w| w.get())
            .filter(|w| *w != i64::MIN && *w != i64::MAX);
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(
            wm, tz,
        )))
    }
}

/// The name `CURRENT_TIMESTAMP` and `NOW()` are planned under (see [`Clock`]).
pub const CURRENT_TIMESTAMP: &str = "weir_current_timestamp";

/// The wall clock when a batch is processed, to the millisecond: `PROCTIME()` (also
/// `LOCALTIMESTAMP`; TIMESTAMP(3), for lookup joins) and `CURRENT_TIMESTAMP` / `NOW()`
/// (TIMESTAMP_LTZ(3)). As in Flink's streaming mode, it is evaluated for every batch, not
/// once at planning as DataFusion's `now()` is.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Clock {
    signature: Signature,
    ltz: bool,
}

impl Clock {
    fn new(ltz: bool) -> Self {
        Self {
            signature: Signature::nullary(Volatility::Volatile),
            ltz,
        }
    }
}

impl ScalarUDFImpl for Clock {
    fn name(&self) -> &str {
        if self.ltz {
            CURRENT_TIMESTAMP
        } else {
            "proctime"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Millisecond,
            self.ltz.then(|| "UTC".into()),
        ))
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let now = chrono::Utc::now().timestamp_millis();
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(
            Some(now),
            self.ltz.then(|| "UTC".into()),
        )))
    }
}
