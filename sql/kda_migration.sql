-- A Kinesis Data Analytics SQL application, moved to weir (see docs/kda-migration.md).
-- Here the source and destination are files so that the job runs anywhere; in production
-- they are 'connector' = 'kinesis' tables (the commented options).

-- KDA: SOURCE_SQL_STREAM_001, the input schema mapped from the Kinesis stream.
CREATE TABLE source_sql_stream_001 (
  device_id    STRING,
  temperature  DOUBLE,
  vibration    DOUBLE,
  reading_time TIMESTAMP_LTZ(3),
  proc_time AS PROCTIME(),
  -- KDA's ROWTIME was the arrival time; here the readings' own time, with a watermark.
  WATERMARK FOR reading_time AS reading_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'filesystem',            -- 'connector' = 'kinesis', 'stream' = 'readings',
  'path' = 'sql/data/device_readings.json', -- 'aws.region' = 'eu-west-1',
  'format' = 'json'                      -- 'scan.stream.initpos' = 'LATEST'
);

-- KDA: reference data from S3 (a CSV), joined with the stream.
CREATE TABLE device_limits (device_id STRING, site STRING, max_temperature DOUBLE)
WITH ('connector' = 'filesystem', 'path' = 'sql/data/device_limits.csv', 'format' = 'csv');

-- KDA: CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (...) plus its output to a
-- Kinesis stream or Firehose: a sink table.
CREATE TABLE destination_sql_stream (
  window_start TIMESTAMP(3), device_id STRING, site STRING, readings BIGINT,
  max_temperature DOUBLE, over_limit BIGINT
) WITH ('connector' = 'filesystem', 'path' = 'target/kda-migration/per-minute', 'format' = 'json');

-- KDA: an intermediate in-application stream fed by a pump, with reference data joined:
-- a view.
CREATE VIEW enriched AS
SELECT r.device_id, r.temperature, r.reading_time, l.site, l.max_temperature AS temperature_limit
FROM source_sql_stream_001 AS r
JOIN device_limits FOR SYSTEM_TIME AS OF r.proc_time AS l ON r.device_id = l.device_id;

-- KDA: CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
--   SELECT STREAM device_id, COUNT(*), MAX(temperature) ...
--   FROM "SOURCE_SQL_STREAM_001"
--   GROUP BY device_id, STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '60' SECOND);
-- The pump is an INSERT; STEP (or FLOOR(ROWTIME TO MINUTE)) is a TUMBLE window.
INSERT INTO destination_sql_stream
SELECT window_start, device_id, site, COUNT(*) AS readings, MAX(temperature) AS max_temperature,
       COUNT(*) FILTER (WHERE temperature > temperature_limit) AS over_limit
FROM TABLE(TUMBLE(TABLE enriched, DESCRIPTOR(reading_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, device_id, site;

-- KDA: a sliding window, WINDOW W1 AS (PARTITION BY device_id RANGE INTERVAL '1' MINUTE
-- PRECEDING): an OVER aggregation, one output row per input row.
CREATE TABLE rolling (device_id STRING, reading_time TIMESTAMP_LTZ(3), temperature DOUBLE,
  avg_last_minute DOUBLE)
WITH ('connector' = 'filesystem', 'path' = 'target/kda-migration/rolling', 'format' = 'json');

INSERT INTO rolling
SELECT device_id, reading_time, temperature, AVG(temperature) OVER w AS avg_last_minute
FROM source_sql_stream_001
WINDOW w AS (PARTITION BY device_id ORDER BY reading_time
             RANGE BETWEEN INTERVAL '1' MINUTE PRECEDING AND CURRENT ROW);
