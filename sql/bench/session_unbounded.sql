-- Flat-memory check for sessions: an unbounded Nexmark bid stream, SESSION (10 s gap) count per
-- bidder (Nexmark q11). Hot bidders never pause for 10 s, so their sessions never close: the
-- operator must keep one partial state per open session, not their rows.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  date_time TIMESTAMP(3), extra STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark');

CREATE TABLE sink (bidder BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT)
WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT bidder, SESSION_START(date_time, INTERVAL '10' SECOND), SESSION_END(date_time, INTERVAL '10' SECOND), COUNT(*)
FROM bid GROUP BY bidder, SESSION(date_time, INTERVAL '10' SECOND);
