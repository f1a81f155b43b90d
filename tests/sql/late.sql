-- After the row at 13 s the watermark is 11 s: the rows at 4 s and 9 s arrive after [0, 10)
-- fired and are late; 10.5 s is on time. After 24 s, [10, 20) fires and the row at 12 s is late.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_late.json', 'format' = 'json');

SELECT window_start, auction, COUNT(*) AS n, SUM(price) AS total
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;

-- CURRENT_WATERMARK (Flink's documented filter for late rows): the watermark the filter has
-- seen when the row's block arrives; NULL before the first one. The second 00:00:04, 00:00:09
-- and 00:00:10.5 arrive behind the watermark 00:00:11, and 00:00:12 behind 00:00:22: dropped.
SELECT auction, date_time FROM bid
WHERE CURRENT_WATERMARK(date_time) IS NULL OR date_time > CURRENT_WATERMARK(date_time);
