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



-- INTERSECT ALL and EXCEPT ALL keep duplicates by count: a row is in the result min(l, r)
-- times (INTERSECT ALL) or max(l - r, 0) times (EXCEPT ALL). Flink's documented example.
CREATE VIEW t1(s) AS VALUES ('c'), ('a'), ('b'), ('b'), ('c');
CREATE VIEW t2(s) AS VALUES ('d'), ('e'), ('a'), ('b'), ('b');

(SELECT s FROM t1) INTERSECT ALL (SELECT s FROM t2);

(SELECT s FROM t1) EXCEPT ALL (SELECT s FROM t2);

-- Over streams, NULLs equal: bids of at least 130 per auction (3, 3, 2) and of at most 50
-- (2, 2, 1): INTERSECT ALL has 100 twice, 101 twice and 102 once.
SELECT auction FROM bid WHERE price >= 130
INTERSECT ALL SELECT auction FROM bid WHERE price <= 50;

-- Each auction's bids (7, 7, 6) less those over 40 (5, 6, 5): 100 twice, 101 and 102 once.
SELECT auction FROM bid EXCEPT ALL SELECT auction FROM bid WHERE price > 40;

SELECT * FROM (VALUES (1, 'a'), (1, 'a'), (1, 'a'), (2, 'b'), (CAST(NULL AS INT), 'n'),
  (CAST(NULL AS INT), 'n')) AS l(k, v)
EXCEPT ALL
SELECT * FROM (VALUES (1, 'a'), (1, 'a'), (3, 'c'), (CAST(NULL AS INT), 'n')) AS r(k, v);
