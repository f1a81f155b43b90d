-- Uses `fahrenheit`, a function registered by examples/custom_functions.rs:
--   cargo run --example custom_functions -- run examples/custom_functions.sql
CREATE TABLE readings (
  device_id    STRING,
  temperature  DOUBLE,
  vibration    DOUBLE,
  reading_time TIMESTAMP_LTZ(3),
  WATERMARK FOR reading_time AS reading_time - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql/data/device_readings.json', 'format' = 'json');

SELECT window_start, device_id, MAX(fahrenheit(temperature)) AS max_f
FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(reading_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, device_id;
