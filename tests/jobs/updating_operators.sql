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

-- EXCEPT ALL: copies per row by count, retracted as the right side catches up.
CREATE TABLE leftover (k BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO leftover
SELECT auction % 50 FROM bid WHERE price % 100 = 0
EXCEPT ALL SELECT bidder % 50 FROM bid WHERE price % 100 = 1;

-- NOT IN (a broadcast subquery): left rows retracted when their value arrives on the right.
CREATE TABLE outsiders (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO outsiders
SELECT auction, price FROM bid
WHERE price % 1000 = 7
  AND auction % 20 NOT IN (SELECT bidder % 20 FROM bid WHERE price % 1000 = 3 AND bidder % 20 < 15);
