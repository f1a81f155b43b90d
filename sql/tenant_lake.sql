-- A multi-tenant data lake: events land as Parquet, partitioned by tenant and date
-- (tenant=A01/dt=2026-01-01/part-....parquet), rolled by size and time like Firehose.
-- A second job keeps an hourly per-tenant summary next to it.
CREATE TABLE tenant_events (
  tenant     STRING,
  user_id    STRING,
  action     STRING,
  amount     DECIMAL(10, 2),
  event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '10' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = 'sql/data/tenant_events.csv',
  'format' = 'csv'
);

CREATE TABLE lake (
  tenant     STRING,
  dt         STRING,
  user_id    STRING,
  action     STRING,
  amount     DECIMAL(10, 2),
  event_time TIMESTAMP(3)
) PARTITIONED BY (tenant, dt) WITH (
  'connector' = 'filesystem',
  'path' = 'target/lake/events',
  'format' = 'parquet',
  'sink.rolling-policy.file-size' = '128MB',
  'sink.rolling-policy.rollover-interval' = '15 min'
);

CREATE TABLE hourly (
  tenant STRING, hour_start TIMESTAMP(3), events BIGINT, orders BIGINT, revenue DECIMAL(20, 2)
) WITH ('connector' = 'filesystem', 'path' = 'target/lake/hourly', 'format' = 'json');

INSERT INTO lake
SELECT tenant, CAST(CAST(event_time AS DATE) AS STRING), user_id, action, amount, event_time
FROM tenant_events;

INSERT INTO hourly
SELECT tenant, window_start, COUNT(*), COUNT(*) FILTER (WHERE action = 'order'), SUM(amount)
FROM TABLE(TUMBLE(TABLE tenant_events, DESCRIPTOR(event_time), INTERVAL '1' HOUR))
GROUP BY window_start, window_end, tenant;
