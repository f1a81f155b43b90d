//! A `weir` binary with a function of its own: `weir::cli::main_with` runs the usual command
//! line (REPL, `run`, `bench`) after registering a vectorised DataFusion UDF,
//! `fahrenheit(celsius DOUBLE) -> DOUBLE`, usable in any query (window aggregates included).
//!
//! `cargo run --example custom_functions -- run examples/custom_functions.sql`

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// `fahrenheit(c)`: a whole column converted at once (arrays in, an array out).
fn fahrenheit() -> ScalarUDF {
    create_udf(
        "fahrenheit",
        vec![DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let c = arrays[0].as_primitive::<Float64Type>();
            let f: Float64Array = c.unary(|c| c * 9.0 / 5.0 + 32.0);
            Ok(ColumnarValue::Array(Arc::new(f) as ArrayRef))
        }),
    )
}

/// Everything this binary adds to weir.
fn register(engine: &weir::Engine) -> weir::Result<()> {
    engine.register_udf(fahrenheit())
}

fn main() -> std::process::ExitCode {
    weir::cli::main_with(register)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    /// `cargo test` runs the example's query through an engine set up as the binary's is.
    #[tokio::test]
    async fn the_function_works_in_a_window_aggregate() {
        let engine = weir::Engine::new();
        super::register(&engine).unwrap();
        let sql = std::fs::read_to_string("examples/custom_functions.sql").unwrap();
        let at = sql.find("SELECT").unwrap();
        engine.execute(&sql[..at]).await.unwrap();
        let mut rows = engine
            .subscribe(sql[at..].trim_end_matches([';', '\n']))
            .await
            .unwrap();
        let mut hottest = f64::MIN;
        while let Some(b) = rows.next().await {
            let b = b.unwrap();
            let col = b.column_by_name("max_f").unwrap();
            let col = datafusion::arrow::array::AsArray::as_primitive::<
                datafusion::arrow::datatypes::Float64Type,
            >(col);
            hottest = col.iter().flatten().fold(hottest, f64::max);
        }
        // The file's hottest reading, in Fahrenheit.
        assert!(hottest > 140.0 && hottest < 250.0, "{hottest}");
    }
}
