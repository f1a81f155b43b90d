-- Device readings over HTTP on `weir serve`: per-device threshold alerts to a webhook, and a
-- lake of every reading in Parquet partitioned by tenant. The tenant column comes from the
-- producer's key (serve.toml [[tenant]]), never from the payload.
--
--   weir serve --config serve.toml sql/serve_devices.sql
--   curl -X POST localhost:8080/v1/tables/readings/records -H 'Authorization: Bearer KEY' \
--        -H 'Content-Type: text/csv' --data-binary @readings.csv
CREATE TABLE readings (
  tenant       STRING METADATA FROM 'tenant' VIRTUAL,
  device_id    STRING,
  temperature  DOUBLE,
  vibration    DOUBLE,
  reading_time TIMESTAMP(3),
  WATERMARK FOR reading_time AS reading_time - INTERVAL '5' SECOND
) WITH ('connector' = 'http', 'format' = 'json');

-- Alerts: POSTed as JSON (signed when 'webhook.secret' is set) to the pager endpoint.
CREATE TABLE alerts (
  tenant STRING, device_id STRING, window_start TIMESTAMP(3), max_temp DOUBLE, max_vibration DOUBLE
) WITH (
  'connector' = 'webhook',
  'url' = 'http://127.0.0.1:9000/alerts',
  'sink.max-retries' = '5',
  'dead-letter.path' = 'weir-data/alerts.dead-letter.jsonl'
);

-- The lake: one directory per tenant.
CREATE TABLE lake (
  tenant STRING, device_id STRING, temperature DOUBLE, vibration DOUBLE, reading_time TIMESTAMP(3)
) PARTITIONED BY (tenant) WITH (
  'connector' = 'filesystem',
  'path' = 'weir-data/lake',
  'format' = 'parquet'
);

INSERT INTO alerts
SELECT tenant, device_id, window_start, MAX(temperature), MAX(vibration)
FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(reading_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, tenant, device_id
HAVING MAX(temperature) > 80 OR MAX(vibration) > 0.6;

INSERT INTO lake SELECT tenant, device_id, temperature, vibration, reading_time FROM readings;
