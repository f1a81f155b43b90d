-- Flat-memory check: an unbounded Nexmark bid stream, 10-second tumbling count per auction,
-- into a blackhole sink. Runs until Ctrl-C / SIGTERM; window state is freed as windows fire.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  date_time TIMESTAMP(3), extra STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark');

CREATE TABLE sink (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, top BIGINT)
WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT window_start, auction, COUNT(*), MAX(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
