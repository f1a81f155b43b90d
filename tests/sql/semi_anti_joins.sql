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
