-- A statement set for the golden restore test (tests/restore.rs): one job reading bid once
-- and writing two tables (a fan-out sink, each table with its own two-phase commit),
-- checkpointed part-way, cancelled and restored at another parallelism.
CREATE TABLE bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'nexmark.events' = '300000');

CREATE TABLE cheap (auction BIGINT, bidder BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE per_window (window_start TIMESTAMP(3), auction BIGINT, n BIGINT)
WITH ('connector' = 'blackhole');

EXECUTE STATEMENT SET BEGIN
  INSERT INTO cheap SELECT auction, bidder, price FROM bid WHERE price < 1000;
  INSERT INTO per_window
  SELECT window_start, auction, COUNT(*) AS n
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end, auction;
END;
