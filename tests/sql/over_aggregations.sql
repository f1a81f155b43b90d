-- OVER aggregations over event time: each row is emitted once the watermark passes it, with
-- its aggregates over the frame that ends at it.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

-- The row and the two before it in its auction.
SELECT auction, date_time, price,
       SUM(price) OVER (PARTITION BY auction ORDER BY date_time
                        ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS last3
FROM bid;

-- The rows of the last 5 seconds, and every row so far, over a named window.
SELECT auction, date_time, price, COUNT(*) OVER w5 AS n5, MIN(price) OVER w5 AS lo5
FROM bid WINDOW w5 AS (PARTITION BY auction ORDER BY date_time
                       RANGE BETWEEN INTERVAL '5' SECOND PRECEDING AND CURRENT ROW);

SELECT date_time, price, SUM(price) OVER (ORDER BY date_time) AS running FROM bid;

-- ORDER BY the time attribute: rows in event-time order, each once the watermark passes it.
SELECT auction, date_time, price FROM bid WHERE price > 150 ORDER BY date_time;

-- LAG and LEAD: the price of the auction's previous and next bid (in event-time order), with
-- a default; LEAD holds a row until its next bid has been passed by the watermark.
SELECT auction, date_time, price,
       LAG(price) OVER w AS prev_price,
       LAG(price, 2, -1) OVER w AS prev2,
       LEAD(price) OVER w AS next_price,
       price - LAG(price, 1, price) OVER w AS change
FROM bid WINDOW w AS (PARTITION BY auction ORDER BY date_time);
