-- MIN, MAX and DISTINCT aggregates over an updating input: each auction's bid count and top
-- price change as bids arrive; the aggregates over them take back the old values.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

-- Auctions 100 and 102 have 7 and 6 bids (tops 190 and 180); auction 101 has 7 (top 200).
SELECT auction % 2 AS k, MIN(n) AS fewest, MAX(n) AS most, MIN(top) AS low_top,
       MAX(top) AS high_top, COUNT(DISTINCT n) AS counts, SUM(DISTINCT n) AS sum_counts
FROM (SELECT auction, COUNT(*) AS n, MAX(price) AS top FROM bid GROUP BY auction)
GROUP BY auction % 2;
