-- weir quick start: bids from the built-in Nexmark generator (one million events, 100 seconds
-- of event time), counted per 10-second tumbling window. Each window prints when it closes.
CREATE TABLE bid (
  auction   BIGINT,
  bidder    BIGINT,
  price     BIGINT,
  channel   STRING,
  url       STRING,
  date_time TIMESTAMP(3),
  extra     STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
  'connector' = 'nexmark',
  'nexmark.events' = '1000000'
);

SELECT window_start, window_end,
       COUNT(*)                AS bids,
       COUNT(DISTINCT auction) AS auctions,
       MAX(price)              AS top_price,
       AVG(price)              AS avg_price
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
