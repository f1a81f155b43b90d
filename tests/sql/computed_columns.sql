-- Computed columns go through the same simplifier as queries: COALESCE works, and the clock
-- (CURRENT_TIMESTAMP, NOW(), LOCALTIMESTAMP) is read per batch, not folded at CREATE TABLE.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  price_or_zero AS COALESCE(price, 0),
  seen AS CURRENT_TIMESTAMP,
  seen_local AS LOCALTIMESTAMP,
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

SELECT COUNT(*) AS n, SUM(price_or_zero) AS total,
       COUNT(*) FILTER (WHERE seen > TIMESTAMP '2026-11-01 00:00:00') AS recent,
       COUNT(*) FILTER (WHERE NOW() >= seen_local) AS ordered
FROM bid;
