-- Device logs checked against thresholds: per device and minute, report the devices whose
-- temperature or vibration crossed its limit. One malformed reading in the file is skipped
-- and counted (see the job summary).
CREATE TABLE readings (
  device_id    STRING,
  temperature  DOUBLE,
  vibration    DOUBLE,
  reading_time TIMESTAMP_LTZ(3),
  WATERMARK FOR reading_time AS reading_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = 'sql/data/device_readings.json',
  'format' = 'json'
);

SELECT device_id, window_start, window_end,
       MAX(temperature)                          AS max_temp,
       COUNT(*) FILTER (WHERE temperature > 80)  AS temp_breaches,
       MAX(vibration)                            AS max_vibration,
       COUNT(*) FILTER (WHERE vibration > 0.6)   AS vibration_breaches
FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(reading_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, device_id
HAVING MAX(temperature) > 80 OR MAX(vibration) > 0.6;
