-- Throughput: a bounded Nexmark bid stream (20M events), TUMBLE count per auction, blackhole sink.
-- weir run sql/bench/tumble_count_per_auction.sql
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  date_time TIMESTAMP(3), extra STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'nexmark.events' = '20000000');

CREATE TABLE sink (window_start TIMESTAMP(3), window_end TIMESTAMP(3), auction BIGINT, bids BIGINT)
WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT window_start, window_end, auction, COUNT(*)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
