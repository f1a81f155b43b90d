-- GROUPING SETS, ROLLUP and CUBE: one aggregate per set, NULL for the columns a set does not
-- group by; GROUPING(x) is 1 where x is such a NULL. Unwindowed: an updating result.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

SELECT auction, bidder, COUNT(*) AS n, SUM(price) AS total
FROM bid GROUP BY GROUPING SETS ((auction, bidder), (auction), ());

SELECT window_start, auction, COUNT(*) AS n, GROUPING(auction) AS g
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, ROLLUP (auction);

SELECT auction, bidder, COUNT(*) AS n FROM bid GROUP BY CUBE (auction, bidder);
