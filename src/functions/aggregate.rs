//! `AVG`, `SUM` and the variance and standard-deviation aggregates with Flink's result types.
//!
//! Flink's `AVG` of an INT column is an INT (the quotient truncated toward zero), and its
//! `SUM` of an INT column is an INT; DataFusion answers DOUBLE and BIGINT. [`SameType`] wraps
//! DataFusion's own aggregate (so its vectorised group accumulators and their checkpointable
//! state are unchanged): the argument is widened batch by batch as DataFusion would, and the
//! result is cast back to the argument's type. DECIMAL results take Flink's precision and
//! scale; DOUBLE arguments go straight to DataFusion. A SUM that overflows the argument's
//! type is NULL (Flink wraps around).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, ReversedUDAF,
    Signature, Volatility,
};

/// Which aggregate [`SameType`] wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Avg,
    Sum,
    /// VAR_POP, VAR_SAMP, STDDEV_POP, STDDEV_SAMP: like AVG, the argument's type.
    Spread,
}

/// DataFusion's `AVG` or `SUM`, answering in the argument's type for the types Flink keeps.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SameType {
    inner: AggregateUDF,
    kind: Kind,
    signature: Signature,
}

impl SameType {
    /// `AVG`.
    pub fn avg() -> Self {
        Self::new(
            datafusion::functions_aggregate::average::avg_udaf(),
            Kind::Avg,
        )
    }

    /// `SUM`.
    pub fn sum() -> Self {
        Self::new(datafusion::functions_aggregate::sum::sum_udaf(), Kind::Sum)
    }

    /// `VAR_SAMP` (also `VARIANCE`), `VAR_POP`, `STDDEV_SAMP` (`STDDEV`) and `STDDEV_POP`.
    pub fn spreads() -> Vec<Self> {
        use datafusion::functions_aggregate::{stddev, variance};
        [
            variance::var_samp_udaf(),
            variance::var_pop_udaf(),
            stddev::stddev_udaf(),
            stddev::stddev_pop_udaf(),
        ]
        .into_iter()
        .map(|f| Self::new(f, Kind::Spread))
        .collect()
    }

    fn new(inner: Arc<AggregateUDF>, kind: Kind) -> Self {
        Self {
            inner: inner.as_ref().clone(),
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// For an argument type whose result type differs from DataFusion's: the type
    /// DataFusion's aggregate is fed (the argument widened) and Flink's result type. `None`
    /// for the types left to DataFusion.
    fn plan(&self, t: &DataType) -> Option<(DataType, DataType)> {
        use DataType::*;
        let same = |wide: DataType| Some((wide, t.clone()));
        match (self.kind, t) {
            (
                Kind::Avg | Kind::Spread,
                Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64,
            ) => same(Float64),
            (_, Float32) => same(Float64),
            (Kind::Sum, Int8 | Int16 | Int32) => same(Int64),
            (Kind::Sum, UInt8 | UInt16 | UInt32) => same(UInt64),
            // Flink: AVG of DECIMAL(p, s) is DECIMAL(38, max(s, 6)); SUM is DECIMAL(38, s).
            // The argument is fed at Flink's scale, so DataFusion's quotient (4 digits more)
            // rounds to it.
            (Kind::Avg, Decimal128(p, s)) => {
                let scale = (*s).max(6);
                let digits = (i16::from(*p) + i16::from(scale) - i16::from(*s)).min(34) as u8;
                Some((Decimal128(digits, scale), Decimal128(38, scale)))
            }
            (Kind::Sum, Decimal128(_, s)) => Some((t.clone(), Decimal128(38, *s))),
            _ => None,
        }
    }

    /// The type DataFusion's aggregate is fed, for the types [`Self::plan`] handles.
    fn widened(&self, t: &DataType) -> Option<DataType> {
        self.plan(t).map(|(wide, _)| wide)
    }

    /// The inner aggregate's arguments for a widened argument.
    fn inner_fields(&self, fields: &[FieldRef], wide: &DataType) -> Vec<FieldRef> {
        let mut out = fields.to_vec();
        if let Some(f) = out.first_mut() {
            *f = Arc::new(f.as_ref().clone().with_data_type(wide.clone()));
        }
        out
    }

    fn inner_return(&self, wide: &DataType, name: &str) -> datafusion::error::Result<FieldRef> {
        let t = self.inner.return_type(std::slice::from_ref(wide))?;
        Ok(Arc::new(Field::new(name, t, true)))
    }

    /// The inner aggregate's accumulator made by `make`, fed widened arguments and answering
    /// in Flink's type; the inner one as it is for the types left to DataFusion.
    fn widened_accumulator(
        &self,
        args: AccumulatorArgs,
        make: fn(&AggregateUDF, AccumulatorArgs) -> datafusion::error::Result<Box<dyn Accumulator>>,
    ) -> datafusion::error::Result<Box<dyn Accumulator>> {
        let out = args.return_field.data_type().clone();
        match self.with_inner(&args, |udf, a, wide| {
            Ok(Box::new(Widened {
                inner: make(udf, a)?,
                wide,
                out,
            }) as Box<dyn Accumulator>)
        }) {
            Some(r) => r,
            None => make(&self.inner, args),
        }
    }

    /// Run `f` with the inner aggregate's accumulator arguments, if the argument is widened.
    fn with_inner<T>(
        &self,
        args: &AccumulatorArgs,
        f: impl FnOnce(&AggregateUDF, AccumulatorArgs, DataType) -> datafusion::error::Result<T>,
    ) -> Option<datafusion::error::Result<T>> {
        let arg = args.expr_fields.first()?.data_type().clone();
        let wide = self.widened(&arg)?;
        let fields = self.inner_fields(args.expr_fields, &wide);
        let ret = match self.inner_return(&wide, args.return_field.name()) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let inner = AccumulatorArgs {
            return_field: ret,
            schema: args.schema,
            ignore_nulls: args.ignore_nulls,
            order_bys: args.order_bys,
            is_reversed: args.is_reversed,
            name: args.name,
            is_distinct: args.is_distinct,
            exprs: args.exprs,
            expr_fields: &fields,
        };
        Some(f(&self.inner, inner, wide))
    }
}

impl AggregateUDFImpl for SameType {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        match arg_types {
            [t] if self.widened(t).is_some() => Ok(arg_types.to_vec()),
            _ => {
                // DataFusion's own coercion for its signature.
                let fields: Vec<FieldRef> = arg_types
                    .iter()
                    .map(|t| Arc::new(Field::new("arg", t.clone(), true)))
                    .collect();
                let coerced = datafusion::logical_expr::type_coercion::functions::fields_with_udf(
                    &fields,
                    &self.inner,
                )?;
                Ok(coerced.iter().map(|f| f.data_type().clone()).collect())
            }
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        match arg_types {
            [t] => match self.plan(t) {
                Some((_, out)) => Ok(out),
                None => self.inner.return_type(arg_types),
            },
            _ => self.inner.return_type(arg_types),
        }
    }

    fn accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> datafusion::error::Result<Box<dyn Accumulator>> {
        self.widened_accumulator(args, AggregateUDF::accumulator)
    }

    fn create_sliding_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> datafusion::error::Result<Box<dyn Accumulator>> {
        self.widened_accumulator(args, AggregateUDF::create_sliding_accumulator)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> datafusion::error::Result<Vec<FieldRef>> {
        let wide = args
            .input_fields
            .first()
            .and_then(|f| self.widened(f.data_type()));
        match wide {
            Some(wide) => {
                let fields = self.inner_fields(args.input_fields, &wide);
                self.inner.state_fields(StateFieldsArgs {
                    name: args.name,
                    input_fields: &fields,
                    return_field: self.inner_return(&wide, args.return_field.name())?,
                    ordering_fields: args.ordering_fields,
                    is_distinct: args.is_distinct,
                })
            }
            None => self.inner.state_fields(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.with_inner(&args, |udf, a, _| Ok(udf.groups_accumulator_supported(a)))
            .map_or_else(
                || self.inner.groups_accumulator_supported(args),
                |r| r.unwrap_or(false),
            )
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> datafusion::error::Result<Box<dyn GroupsAccumulator>> {
        let out = args.return_field.data_type().clone();
        match self.with_inner(&args, |udf, a, wide| {
            Ok(Box::new(WidenedGroups {
                inner: udf.create_groups_accumulator(a)?,
                wide,
                out,
            }) as Box<dyn GroupsAccumulator>)
        }) {
            Some(r) => r,
            None => self.inner.create_groups_accumulator(args),
        }
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }

    fn default_value(&self, data_type: &DataType) -> datafusion::error::Result<ScalarValue> {
        ScalarValue::try_from(data_type)
    }
}

fn widen(values: &[ArrayRef], wide: &DataType) -> datafusion::error::Result<Vec<ArrayRef>> {
    let mut out = values.to_vec();
    if let Some(v) = out.first_mut() {
        *v = cast(v, wide)?;
    }
    Ok(out)
}

/// An accumulator fed widened arguments, answering in the argument's type.
#[derive(Debug)]
struct Widened {
    inner: Box<dyn Accumulator>,
    wide: DataType,
    out: DataType,
}

impl Accumulator for Widened {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.inner.update_batch(&widen(values, &self.wide)?)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.inner.retract_batch(&widen(values, &self.wide)?)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        self.inner.evaluate()?.cast_to(&self.out)
    }

    fn size(&self) -> usize {
        self.inner.size() + std::mem::size_of::<Self>()
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.inner.merge_batch(states)
    }
}

/// A groups accumulator fed widened arguments, answering in the argument's type.
struct WidenedGroups {
    inner: Box<dyn GroupsAccumulator>,
    wide: DataType,
    out: DataType,
}

impl GroupsAccumulator for WidenedGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> datafusion::error::Result<()> {
        self.inner.update_batch(
            &widen(values, &self.wide)?,
            group_indices,
            opt_filter,
            total_num_groups,
        )
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> datafusion::error::Result<ArrayRef> {
        Ok(cast(&self.inner.evaluate(emit_to)?, &self.out)?)
    }

    fn state(&mut self, emit_to: EmitTo) -> datafusion::error::Result<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> datafusion::error::Result<()> {
        self.inner
            .merge_batch(values, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> datafusion::error::Result<Vec<ArrayRef>> {
        self.inner
            .convert_to_state(&widen(values, &self.wide)?, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Int32Type};
    use datafusion::prelude::SessionContext;

    async fn one(sql: &str) -> datafusion::arrow::record_batch::RecordBatch {
        let ctx = SessionContext::new();
        super::super::register(&ctx);
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    #[tokio::test]
    async fn avg_and_sum_of_int_are_int_with_and_without_groups() {
        // Flink: AVG of INT is INT (truncated toward zero), SUM of INT is INT.
        let b = one("SELECT AVG(x) AS a, SUM(x) AS s, SUM(y) AS t FROM (VALUES \
             (CAST(1 AS INT), CAST(1 AS TINYINT)), (CAST(2 AS INT), CAST(1 AS TINYINT)), \
             (CAST(2 AS INT), CAST(1 AS TINYINT))) AS v(x, y)")
        .await;
        assert_eq!(b.schema().field(0).data_type(), &DataType::Int32);
        assert_eq!(b.schema().field(1).data_type(), &DataType::Int32);
        assert_eq!(b.schema().field(2).data_type(), &DataType::Int8);
        assert_eq!(b.column(0).as_primitive::<Int32Type>().value(0), 1);
        assert_eq!(b.column(1).as_primitive::<Int32Type>().value(0), 5);
        // The group accumulator path, with a negative quotient: -5 / 2 = -2 as in Java.
        let b = one(
            "SELECT k, AVG(x) AS a FROM (VALUES ('a', CAST(1 AS INT)), ('a', CAST(2 AS INT)), \
             ('b', CAST(-3 AS INT)), ('b', CAST(-2 AS INT))) AS v(k, x) GROUP BY k ORDER BY k",
        )
        .await;
        let a = b.column(1).as_primitive::<Int32Type>();
        assert_eq!((a.value(0), a.value(1)), (1, -2));
        assert_eq!(a.null_count(), 0);
    }

    #[tokio::test]
    async fn avg_of_decimal_has_scale_six_rounded_half_up() {
        let b = one(
            "SELECT AVG(d) AS a FROM (VALUES (CAST(1.5 AS DECIMAL(2, 1))), \
             (CAST(2.5 AS DECIMAL(2, 1))), (CAST(2.5 AS DECIMAL(2, 1)))) AS v(d)",
        )
        .await;
        assert_eq!(
            b.schema().field(0).data_type(),
            &DataType::Decimal128(38, 6)
        );
        let v = datafusion::common::ScalarValue::try_from_array(b.column(0), 0).unwrap();
        assert_eq!(v.to_string(), "2.166667");
    }
}
