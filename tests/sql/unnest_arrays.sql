-- ARRAY and MAP columns, and CROSS JOIN UNNEST: a row per array element (an empty or NULL
-- array gives no row, as a cross join).
CREATE TABLE orders (id INT, customer STRING, items ARRAY<STRING>, qty MAP<STRING, INT>,
  ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
WITH ('connector' = 'filesystem', 'path' = '$DATA/orders_items.json', 'format' = 'json');

DESCRIBE orders;

SELECT id, CARDINALITY(items) AS n, items[1] AS first, qty['apple'] AS apples,
       ELEMENT(CASE WHEN CARDINALITY(items) = 1 THEN items END) AS only_item
FROM orders;

-- Flink's form: 6 rows (orders 2 and 4 have none).
SELECT o.id, o.customer, t.item
FROM orders AS o CROSS JOIN UNNEST(o.items) AS t (item);

-- LEFT JOIN … ON TRUE keeps orders 2 and 4 (empty and NULL arrays), with a NULL item: 8 rows.
SELECT o.id, t.item
FROM orders AS o LEFT JOIN UNNEST(o.items) AS t (item) ON TRUE;

-- UNNEST in the SELECT list.
SELECT id, UNNEST(items) AS item FROM orders WHERE id > 2;

-- Unnested rows keep their time attribute: items per 10-second window.
SELECT window_start, t.item, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '10' SECOND)) AS o
CROSS JOIN UNNEST(o.items) AS t (item)
GROUP BY window_start, window_end, t.item;
