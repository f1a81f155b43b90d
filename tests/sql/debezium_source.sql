-- A 'debezium-json' source is a changelog, as in Flink: c and r events insert (+I), u events
-- retract the before image (-U) and insert the after image (+U), d events delete (-D). The
-- log (tests/data/products_cdc.json) holds one event that is not JSON and one whose after
-- image lacks a declared field: both are counted as malformed and skipped. One event comes
-- wrapped in Debezium's {"schema": …, "payload": …} envelope.
CREATE TABLE products (id INT, name STRING, weight DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '$DATA/products_cdc.json', 'format' = 'debezium-json');

-- The table the log leaves: 101 (scooter, updated to 5.18), 103 and 104; 102 was deleted.
SELECT * FROM products;

-- Aggregates over a changelog retract what updates and deletes take away.
SELECT COUNT(*) AS n, MAX(weight) AS heaviest, MIN(weight) AS lightest FROM products;

SELECT id, name FROM products WHERE weight > 1;
