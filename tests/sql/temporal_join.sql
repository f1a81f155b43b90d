-- Event-time temporal join (Flink's currency-rate example): each order takes the rate that
-- was valid at its order_time. EUR: 1.10 from 09:30, 1.20 from 10:15, 1.30 from 11:00;
-- USD: 1.00 from 09:00, 0.90 from 10:45; no JPY rate.
CREATE TABLE orders (id INT, currency STRING, amount INT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' MINUTE)
WITH ('connector' = 'filesystem', 'path' = '$DATA/fx_orders.csv', 'format' = 'csv');

CREATE TABLE rates (currency STRING, rate DECIMAL(10, 2), update_time TIMESTAMP(3),
  WATERMARK FOR update_time AS update_time,
  PRIMARY KEY (currency) NOT ENFORCED)
WITH ('connector' = 'filesystem', 'path' = '$DATA/fx_rates.csv', 'format' = 'csv');

-- Orders 1 (10:00, EUR 1.10), 2 (10:20, EUR 1.20), 3 (10:30, USD 1.00), 4 (11:05, EUR 1.30);
-- 5 (JPY) has no rate and 6 (EUR at 09:00) comes before the first EUR rate: both dropped.
SELECT o.id, o.order_time, o.amount, r.rate, o.amount * r.rate AS converted
FROM orders AS o
JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.currency = r.currency;

-- LEFT JOIN keeps orders 5 and 6 with a NULL rate.
SELECT o.id, r.rate
FROM orders AS o
LEFT JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.currency = r.currency;

-- A table without a primary key is not a versioned table.
CREATE TABLE plain_rates (currency STRING, rate DECIMAL(10, 2), update_time TIMESTAMP(3),
  WATERMARK FOR update_time AS update_time)
WITH ('connector' = 'filesystem', 'path' = '$DATA/fx_rates.csv', 'format' = 'csv');
SELECT o.id, r.rate FROM orders AS o
JOIN plain_rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.currency = r.currency;

-- The join must be on the versioned table's primary key.
SELECT o.id, r.rate FROM orders AS o
JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.amount = r.rate;

-- A lookup join with AS OF PROCTIME() written inline (no PROCTIME() column needed).
CREATE TABLE currency_names (currency STRING, name STRING)
WITH ('connector' = 'filesystem', 'path' = '$DATA/fx_names.csv', 'format' = 'csv');
SELECT o.id, n.name
FROM orders AS o
JOIN currency_names FOR SYSTEM_TIME AS OF PROCTIME() AS n ON o.currency = n.currency;
