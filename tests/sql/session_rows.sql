-- The SESSION window TVF without aggregation: each row with its session's bounds, emitted once
-- the session has closed (watermark past its last row + gap). Sessions whose windows touch
-- merge, as in Flink: auction 100's rows at 11 s and 14 s share [11 s, 17 s).
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

SELECT auction, date_time, price, window_start, window_end, window_time
FROM TABLE(SESSION(TABLE bid PARTITION BY auction, DESCRIPTOR(date_time), INTERVAL '3' SECOND));

-- Without PARTITION BY: one sequence of sessions over all rows. The bids from 1 s to 16 s are
-- each at most 2 s apart, so they form one session [1 s, 18 s).
SELECT date_time, window_start, window_end
FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND))
WHERE date_time < TIMESTAMP '2026-01-01 00:00:12';
