-- Updating jobs over the operators added for Flink SQL compatibility, for the golden restore
-- test (tests/restore.rs; see new_operators.sql).
CREATE TABLE bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'nexmark.events' = '300000');

CREATE TABLE spread (k BIGINT, fewest BIGINT, most BIGINT, counts BIGINT) WITH ('connector' = 'blackhole');

-- MIN, MAX and DISTINCT over an updating input (multiset accumulators).
INSERT INTO spread
SELECT k, MIN(n), MAX(n), COUNT(DISTINCT n)
FROM (SELECT auction % 10 AS k, auction, COUNT(*) AS n FROM bid GROUP BY auction)
GROUP BY k;

-- A changelog source (debezium-json): its change events through an updating aggregate.
CREATE TABLE products (id INT, name STRING, weight DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '$DATA/products_cdc.json', 'format' = 'debezium-json');
CREATE TABLE product_weights (name STRING, n BIGINT, heaviest DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO product_weights SELECT name, COUNT(*), MAX(weight) FROM products GROUP BY name;
