-- A wrong type, a line that is not JSON, a missing field and a NULL event time: four records
-- counted and skipped; the three good rows are aggregated.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_malformed.json', 'format' = 'json');

SELECT window_start, auction, COUNT(*) AS n, SUM(price) AS total
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
