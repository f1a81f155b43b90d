//! Lookup joins against reference tables in files (and their reload), and where updating
//! results may go: debezium-json files yes, plain JSON files no, print with row kinds.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;

fn orders_ddl(path: &std::path::Path, monitor: bool) -> String {
    format!(
        "CREATE TABLE orders (order_id BIGINT, product_id BIGINT, qty BIGINT, proc_time AS PROCTIME()) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json'{});",
        path.display(),
        if monitor {
            ", 'source.monitor-interval' = '50 ms'"
        } else {
            ""
        }
    )
}

fn products_ddl(path: &std::path::Path, extra: &str) -> String {
    format!(
        "CREATE TABLE products (id BIGINT, name STRING, price BIGINT) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv'{extra});",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_join_matches_batch_join() {
    let dir = tempdir();
    let orders = dir.path().join("orders.json");
    let products = dir.path().join("products.csv");
    let order_lines: Vec<String> = (0..5000)
        .map(|i| {
            format!(
                "{{\"order_id\": {i}, \"product_id\": {}, \"qty\": {}}}",
                (i * 7) % 130,
                i % 5 + 1
            )
        })
        .collect();
    write_lines(&orders, &order_lines);
    let mut product_lines = vec!["id,name,price".to_string()];
    product_lines.extend((0..100).map(|i| format!("{i},p{i},{}", 100 + i)));
    write_lines(&products, &product_lines);

    let ddl = format!(
        "{}\n{}",
        orders_ddl(&orders, false),
        products_ddl(&products, "")
    );
    let stream_sql = "SELECT o.order_id, p.name, o.qty * p.price AS amount FROM orders AS o \
                      JOIN products FOR SYSTEM_TIME AS OF o.proc_time AS p ON o.product_id = p.id";
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_json(
        "orders",
        orders.to_str().unwrap(),
        datafusion::prelude::JsonReadOptions::default().file_extension(".json"),
    )
    .await
    .unwrap();
    ctx.register_csv(
        "products",
        products.to_str().unwrap(),
        datafusion::prelude::CsvReadOptions::new(),
    )
    .await
    .unwrap();
    let expected = batch(
        &ctx,
        "SELECT o.order_id, p.name, o.qty * p.price AS amount FROM orders o JOIN products p ON o.product_id = p.id",
    )
    .await;
    assert_same_rows(&stream(&ddl, stream_sql).await, &expected, "lookup join");

    let left_sql = stream_sql.replace(" JOIN products", " LEFT JOIN products");
    let expected = batch(
        &ctx,
        "SELECT o.order_id, p.name, o.qty * p.price AS amount FROM orders o LEFT JOIN products p ON o.product_id = p.id",
    )
    .await;
    let got = stream(&ddl, &left_sql).await;
    assert_same_rows(&got, &expected, "lookup left join");
    assert!(
        rows(&got).iter().any(|r| r.contains("NULL")),
        "orders of unknown products are kept"
    );

    // AS OF a column that is neither a processing time nor an event time is refused.
    let engine = weir::Engine::new();
    engine.execute(&ddl).await.unwrap();
    let err = engine
        .subscribe("SELECT o.order_id FROM orders AS o JOIN products FOR SYSTEM_TIME AS OF o.qty AS p ON o.product_id = p.id")
        .await
        .err()
        .expect("an error");
    assert!(err.to_string().contains("event-time column"), "{err}");
}

async fn next(sub: &mut weir::Subscription) -> Vec<String> {
    let b = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a joined row");
    rows(&[b.unwrap().unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_table_is_reloaded_when_its_files_change() {
    let dir = tempdir();
    let orders = dir.path().join("orders");
    let products = dir.path().join("products");
    std::fs::create_dir_all(&orders).unwrap();
    std::fs::create_dir_all(&products).unwrap();
    let publish = |dir: &std::path::Path, name: &str, lines: &[String]| {
        let tmp = dir.join(format!(".{name}"));
        write_lines(&tmp, lines);
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    };
    publish(
        &products,
        "p.csv",
        &["id,name,price".into(), "1,old,10".into()],
    );
    let engine = weir::Engine::new();
    engine.execute(&orders_ddl(&orders, true)).await.unwrap();
    engine
        .execute(&products_ddl(
            &products,
            ", 'lookup.join.cache.ttl' = '100 ms'",
        ))
        .await
        .unwrap();
    let mut sub = engine
        .subscribe("SELECT o.order_id, p.name FROM orders AS o JOIN products FOR SYSTEM_TIME AS OF o.proc_time AS p ON o.product_id = p.id")
        .await
        .unwrap();
    publish(
        &orders,
        "a.json",
        &["{\"order_id\": 1, \"product_id\": 1, \"qty\": 1}".into()],
    );
    assert_eq!(next(&mut sub).await, vec!["1 | old"]);
    // A different size as well as a new modification time.
    publish(
        &products,
        "p.csv",
        &["id,name,price".into(), "1,new,1000".into()],
    );
    // The loader checks every 100 ms; give it time to see the change and read the file.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish(
        &orders,
        "b.json",
        &["{\"order_id\": 2, \"product_id\": 1, \"qty\": 1}".into()],
    );
    assert_eq!(next(&mut sub).await, vec!["2 | new"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_results_go_to_debezium_json_not_to_plain_files() {
    let dir = tempdir();
    let input = dir.path().join("in.json");
    // Several batches, so counts are updated (retracted and re-emitted) along the way.
    let lines: Vec<String> = (0..20_000)
        .map(|i| format!("{{\"k\": {}, \"v\": {i}}}", i % 3))
        .collect();
    write_lines(&input, &lines);
    let out_plain = dir.path().join("plain");
    let out_dbz = dir.path().join("dbz");
    let engine = weir::Engine::new();
    engine
        .execute(&format!(
            "CREATE TABLE t (k BIGINT, v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE plain (k BIGINT, n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE dbz (k BIGINT, n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'debezium-json');",
            input.display(),
            out_plain.display(),
            out_dbz.display()
        ))
        .await
        .unwrap();
    let err = engine
        .execute("INSERT INTO plain SELECT k, COUNT(*) FROM t GROUP BY k;")
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("cannot take an updating query")
            && err.to_string().contains("debezium-json"),
        "{err}"
    );

    let mut jobs = vec![];
    for out in engine
        .execute("INSERT INTO dbz SELECT k, COUNT(*) FROM t GROUP BY k;")
        .await
        .unwrap()
    {
        if let weir::StatementOutput::Job(j) = out {
            jobs.push(j);
        }
    }
    for j in jobs {
        j.wait().await.unwrap();
    }
    // Apply the envelopes: the final state is the count per key.
    let mut state = std::collections::BTreeMap::<i64, i64>::new();
    let mut deletes = 0;
    for entry in std::fs::read_dir(&out_dbz).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["op"].as_str().unwrap() {
                "c" => {
                    state.insert(
                        v["after"]["k"].as_i64().unwrap(),
                        v["after"]["n"].as_i64().unwrap(),
                    );
                }
                "d" => {
                    deletes += 1;
                    let k = v["before"]["k"].as_i64().unwrap();
                    assert_eq!(
                        state.remove(&k),
                        v["before"]["n"].as_i64(),
                        "retracts the row it inserted"
                    );
                }
                other => panic!("op {other}"),
            }
        }
    }
    assert_eq!(
        state,
        [(0, 6667), (1, 6667), (2, 6666)].into_iter().collect()
    );
    assert!(deletes > 0, "updates were written as d + c pairs");
}

#[test]
fn print_sink_shows_row_kinds() {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema =
        weir::changelog::with_op_field(&Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let b = weir::changelog::batch_with_ops(
        schema,
        vec![Arc::new(Int64Array::from(vec![1, 1, 2, 2]))],
        vec![0, 1, 2, 3],
    )
    .unwrap();
    let _: &RecordBatch = &b;
    assert_eq!(
        weir::connectors::print::changelog_lines(&b, "").unwrap(),
        "+I[1]\n-U[1]\n+U[2]\n-D[2]\n"
    );
}
