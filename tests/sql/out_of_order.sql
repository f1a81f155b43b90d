-- Rows arrive up to 2 s out of order; the watermark delay is 2 s, so none is late.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

SELECT window_start, window_end, COUNT(*) AS n, SUM(price) AS total, MIN(price) AS lo, MAX(price) AS hi
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '5' SECOND))
GROUP BY window_start, window_end;

SELECT auction, HOP_START(date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS ws, COUNT(*) AS n
FROM bid GROUP BY auction, HOP(date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND);

SELECT auction, SESSION_START(date_time, INTERVAL '3' SECOND) AS s, SESSION_END(date_time, INTERVAL '3' SECOND) AS e, COUNT(*) AS n
FROM bid GROUP BY auction, SESSION(date_time, INTERVAL '3' SECOND);
