-- Flink's legacy group windows: TUMBLE_ROWTIME is the window's time attribute (its end less
-- 1 ms), usable in a window over the window's rows.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

SELECT TUMBLE_START(date_time, INTERVAL '5' SECOND) AS ws,
       TUMBLE_ROWTIME(date_time, INTERVAL '5' SECOND) AS rt, COUNT(*) AS n
FROM bid GROUP BY TUMBLE(date_time, INTERVAL '5' SECOND);

SELECT HOP_END(date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS we,
       HOP_ROWTIME(date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS rt, COUNT(*) AS n
FROM bid GROUP BY HOP(date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND);

-- Cascaded: a 10 s window over 5 s windows, through TUMBLE_ROWTIME.
CREATE VIEW per5 AS
SELECT auction, TUMBLE_ROWTIME(date_time, INTERVAL '5' SECOND) AS rt, COUNT(*) AS n
FROM bid GROUP BY auction, TUMBLE(date_time, INTERVAL '5' SECOND);

SELECT TUMBLE_START(rt, INTERVAL '10' SECOND) AS ws, SUM(n) AS n
FROM per5 GROUP BY TUMBLE(rt, INTERVAL '10' SECOND);

-- A view with its own window_start column does not clash with the group window's.
CREATE VIEW with_ws AS SELECT auction, date_time, date_time AS window_start FROM bid;

SELECT SESSION_START(date_time, INTERVAL '3' SECOND) AS s, COUNT(*) AS n, MAX(window_start) AS m
FROM with_ws GROUP BY SESSION(date_time, INTERVAL '3' SECOND);

-- Processing-time group windows: TUMBLE_PROCTIME is the window's time attribute on the
-- processing-time clock, usable in a window downstream. (Sums over the windows, so the answer
-- does not depend on the clock.)
CREATE TABLE bid_pt (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  pt AS PROCTIME())
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

CREATE VIEW per_hour AS
SELECT auction, TUMBLE_PROCTIME(pt, INTERVAL '1' HOUR) AS p, COUNT(*) AS n
FROM bid_pt GROUP BY auction, TUMBLE(pt, INTERVAL '1' HOUR);

SELECT SUM(n) AS n FROM (SELECT SUM(n) AS n FROM per_hour GROUP BY TUMBLE(p, INTERVAL '1' DAY));
