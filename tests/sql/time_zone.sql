-- The session time zone ('table.local-time-zone'), as Flink's time-zone page describes:
-- TIMESTAMP_LTZ values print on the zone's wall clock, HOUR() and DATE_FORMAT read it, and
-- windows over a TIMESTAMP_LTZ align to it (a day starts at the zone's midnight).
SET 'table.local-time-zone' = 'Asia/Shanghai';
CREATE TABLE o (id INT, ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ms, 3),
  WATERMARK FOR ts AS ts)
WITH ('connector' = 'filesystem', 'path' = '$DATA/ltz_orders.json', 'format' = 'json');

-- 1577808000000 ms is 2019-12-31 16:00 UTC: 2020-01-01 00:00 in Shanghai.
SELECT id, ts, HOUR(ts) AS h, CAST(ts AS STRING) AS s, DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm') AS d
FROM o;

-- Daily windows from Shanghai's midnight: 3 orders on 2020-01-01, 2 on 2020-01-02.
SELECT window_start, window_end, window_time, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE o, DESCRIPTOR(ts), INTERVAL '1' DAY))
GROUP BY window_start, window_end, window_time;

-- A TIMESTAMP column is not affected by the zone.
SELECT HOUR(TIMESTAMP '2020-01-01 10:00:00') AS h, TO_TIMESTAMP_LTZ(0, 3) AS epoch;

-- A zone with daylight saving time: windows that divide an hour are planned, daily ones are
-- not yet.
SET 'table.local-time-zone' = 'Europe/Berlin';
SELECT window_start, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE o, DESCRIPTOR(ts), INTERVAL '1' HOUR))
GROUP BY window_start, window_end;
SELECT window_start, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE o, DESCRIPTOR(ts), INTERVAL '1' DAY))
GROUP BY window_start, window_end;

SET 'table.local-time-zone' = 'Mars/Olympus_Mons';
