-- Four files, one shard each, each in time order but interleaved with the others. The
-- watermark is the minimum over the shards, so with no delay at all nothing is late.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'filesystem', 'path' = '$DATA/shards', 'format' = 'json');

SELECT window_start, COUNT(*) AS n, COUNT(DISTINCT auction) AS auctions, SUM(price) AS total
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '8' SECOND))
GROUP BY window_start, window_end;
