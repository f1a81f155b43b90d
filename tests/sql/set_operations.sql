-- Set operations over streams. UNION ALL passes rows on, its watermark the minimum of its
-- inputs'; UNION is a distinct over the union (each row emitted once).
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

SELECT auction AS id, 'auction' AS kind FROM bid WHERE price > 100
UNION ALL
SELECT bidder, 'bidder' FROM bid WHERE price > 150;

CREATE VIEW both_sides AS
SELECT auction, price, date_time FROM bid WHERE auction = 100
UNION ALL
SELECT auction, price, date_time FROM bid WHERE auction = 101;

SELECT window_start, COUNT(*) AS n, SUM(price) AS total
FROM TABLE(TUMBLE(TABLE both_sides, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;

SELECT auction FROM bid WHERE price > 100 UNION SELECT auction FROM bid WHERE price < 50;

SELECT VALUES_ID FROM (VALUES (1), (2)) AS t(VALUES_ID) UNION ALL SELECT 3;


