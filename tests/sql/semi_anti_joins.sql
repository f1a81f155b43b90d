-- Semi and anti joins: IN / EXISTS keep the rows with a match (each once, as soon as a match
-- is known); NOT EXISTS keeps the rows without one (updating: a row is retracted when its
-- first match arrives). INTERSECT and EXCEPT are distinct semi / anti joins.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

-- Auctions that had a bid over 190: only 101 (its 200).
SELECT auction, price FROM bid WHERE auction IN (SELECT auction FROM bid WHERE price > 190);

-- Each auction's highest bid: no bid of the same auction is higher.
SELECT auction, price FROM bid b1
WHERE NOT EXISTS (SELECT 1 FROM bid b2 WHERE b2.auction = b1.auction AND b2.price > b1.price);

SELECT auction FROM bid INTERSECT SELECT auction FROM bid WHERE price > 185;

SELECT auction FROM bid EXCEPT SELECT auction FROM bid WHERE price > 185;

-- NOT IN (SELECT ...) follows SQL's three-valued logic. Bids over 150 whose price is not an
-- auction-101 price plus 10 (30, 60, ..., 180, 210): all but the 180.
SELECT auction, price FROM bid
WHERE price > 150 AND price NOT IN (SELECT price + 10 FROM bid WHERE auction = 101);

-- A NULL in the subquery: no row is in the result (x NOT IN (..., NULL) is never true).
SELECT auction, price FROM bid
WHERE price > 150
  AND price NOT IN (SELECT CASE WHEN price = 10 THEN NULL ELSE price END FROM bid WHERE auction = 100);

-- A NULL on the left is in the result only when the subquery is empty: here it is.
SELECT k FROM (VALUES (1), (CAST(NULL AS BIGINT))) AS t(k)
WHERE k NOT IN (SELECT auction FROM bid WHERE price > 1000);

-- ... and here it is not: only 1.
SELECT k FROM (VALUES (1), (2), (CAST(NULL AS BIGINT))) AS t(k)
WHERE k NOT IN (SELECT auction - 99 FROM bid WHERE auction = 101);
