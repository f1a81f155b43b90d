-- An event-time temporal join against a versioned table read as a changelog (Flink's usual
-- versioned table: a debezium-json rates table with a primary key and a watermark). +I and +U
-- rows are versions from their event time; -U rows are skipped; a -D row deletes its key from
-- its event time (its before image's update_time here: 10:00:20).
CREATE TABLE rates (currency STRING, rate DOUBLE, update_time TIMESTAMP(3),
  WATERMARK FOR update_time AS update_time, PRIMARY KEY (currency) NOT ENFORCED)
WITH ('connector' = 'filesystem', 'path' = '$DATA/rates_cdc.json', 'format' = 'debezium-json');
CREATE TABLE orders (id INT, currency STRING, amount INT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time)
WITH ('connector' = 'filesystem', 'path' = '$DATA/orders_fx.json', 'format' = 'json');

-- 1: EUR 1.10 (valid from :00); 2: JPY 0.0090; 3: EUR 1.12 (from :10); 4: GBP has no version
-- yet at :14 (dropped; NULL in the LEFT JOIN); 5: GBP 1.30 (from :15); 6: JPY was deleted at
-- :20 (dropped; NULL in the LEFT JOIN).
SELECT o.id, o.currency, r.rate
FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.currency = r.currency;

SELECT o.id, o.currency, r.rate
FROM orders AS o LEFT JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.currency = r.currency;
