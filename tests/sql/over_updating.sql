-- OVER aggregations over an updating input (Nexmark q6's shape): each auction's final price
-- changes as bids arrive, and the average over a seller's last auctions follows. The
-- changelog retracts output rows whose frame changed; applied, it ends in the batch answer.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

-- Per auction: its highest price and last bid time; per "seller" (auction % 2): the average
-- final price over the seller's auction and the one before it, by last bid time.
SELECT seller, final, last_bid,
       AVG(final) OVER (PARTITION BY seller ORDER BY last_bid
                        ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS avg2,
       COUNT(*) OVER (PARTITION BY seller ORDER BY last_bid
                      ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS n
FROM (SELECT auction % 2 AS seller, auction, MAX(price) AS final, MAX(date_time) AS last_bid
      FROM bid GROUP BY auction);

-- Unbounded: the running total of final prices, by price (RANGE: equal prices share it).
SELECT seller, final,
       SUM(final) OVER (PARTITION BY seller ORDER BY final
                        RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
FROM (SELECT auction % 2 AS seller, auction, MAX(price) AS final FROM bid GROUP BY auction);

-- Top-N over an updating input: the two auctions with the highest final price (a changelog as
-- prices rise); final answer 101 (200), 100 (190).
SELECT auction, final, rn FROM (
  SELECT auction, final, ROW_NUMBER() OVER (ORDER BY final DESC) AS rn
  FROM (SELECT auction, MAX(price) AS final FROM bid GROUP BY auction))
WHERE rn <= 2;

-- Frames that do not end at the current row are not supported yet.
SELECT seller, SUM(final) OVER (PARTITION BY seller ORDER BY final
                                ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS s
FROM (SELECT auction % 2 AS seller, auction, MAX(price) AS final FROM bid GROUP BY auction);
