//! Embedding weir: the application creates a table it feeds itself, subscribes to a windowed
//! query over it, pushes Arrow batches, and receives each window's result as soon as the
//! watermark passes it — while input is still arriving.
//!
//! Run with `cargo run --example embed`.

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::util::pretty::pretty_format_batches;
use futures::StreamExt;

#[tokio::main]
async fn main() -> weir::Result<()> {
    let engine = weir::Engine::new();
    engine
        .execute(
            "CREATE TABLE orders (
                 customer STRING, amount DOUBLE, order_time TIMESTAMP(3),
                 WATERMARK FOR order_time AS order_time - INTERVAL '2' SECOND
             ) WITH ('connector' = 'push')",
        )
        .await?;

    let mut results = engine
        .subscribe(
            "SELECT window_start, customer, COUNT(*) AS orders, SUM(amount) AS revenue
             FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end, customer",
        )
        .await?;

    let orders = engine.push_handle("orders")?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new(
            "order_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let batch =
        |customers: &[&str], amounts: &[f64], seconds: &[i64]| -> weir::Result<RecordBatch> {
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(customers.to_vec())),
                    Arc::new(Float64Array::from(amounts.to_vec())),
                    Arc::new(TimestampMillisecondArray::from(
                        seconds.iter().map(|s| s * 1000).collect::<Vec<_>>(),
                    )),
                ],
            )?)
        };

    // Orders of the first minute, slightly out of order.
    orders
        .push(batch(
            &["ada", "bob", "ada"],
            &[12.5, 40.0, 7.5],
            &[5, 31, 20],
        )?)
        .await?;
    // An order at 1:03 moves the watermark to 1:01: the first minute is complete.
    orders.push(batch(&["bob"], &[99.0], &[63])?).await?;
    let first = results.next().await.expect("the first minute is emitted")?;
    println!(
        "first minute, emitted while input is still open:\n{}",
        pretty_format_batches(&[first])?
    );

    // End of input: every open window fires.
    orders.close()?;
    while let Some(batch) = results.next().await {
        println!("at end of input:\n{}", pretty_format_batches(&[batch?])?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example end to end.
    #[test]
    fn example_runs() {
        super::main().expect("the embedding example runs");
    }
}
