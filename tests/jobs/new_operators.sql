-- Jobs over the stateful operators added for Flink SQL compatibility, for the golden restore
-- test (tests/restore.rs): each is checkpointed part-way, cancelled, restored at another
-- parallelism and must end with the rows of an uninterrupted run. (Updating jobs are in
-- updating_operators.sql: the test writes one file's sinks in one format.)
CREATE TABLE person (
    id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, state STRING,
    date_time TIMESTAMP(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND,
    PRIMARY KEY (id) NOT ENFORCED
) WITH ('connector' = 'nexmark', 'nexmark.events' = '300000');

CREATE TABLE bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'nexmark.events' = '300000');

CREATE TABLE lag_lead (auction BIGINT, date_time TIMESTAMP(3), prev TIMESTAMP(3), next TIMESTAMP(3))
WITH ('connector' = 'blackhole');
CREATE TABLE bidder_city (bidder BIGINT, price BIGINT, city STRING) WITH ('connector' = 'blackhole');
CREATE TABLE sessions (bidder BIGINT, date_time TIMESTAMP(3), window_start TIMESTAMP(3), window_end TIMESTAMP(3))
WITH ('connector' = 'blackhole');

-- LAG / LEAD (rows of one time differ only in what they show: the same rows at any parallelism).
INSERT INTO lag_lead
SELECT auction, date_time, LAG(date_time) OVER w, LEAD(date_time) OVER w
FROM bid WINDOW w AS (PARTITION BY auction ORDER BY date_time);

-- Event-time temporal join against the versioned person table.
INSERT INTO bidder_city
SELECT b.bidder, b.price, p.city
FROM bid AS b JOIN person FOR SYSTEM_TIME AS OF b.date_time AS p ON b.bidder = p.id;

-- SESSION TVF rows.
INSERT INTO sessions
SELECT bidder, date_time, window_start, window_end
FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '1' SECOND));

-- MATCH_RECOGNIZE: runs of bids with rising times per auction, within 2 s. The pattern reads
-- only event times, so rows of one time (which arrive in a different order at another
-- parallelism) cannot change the matches.
CREATE TABLE bursts (auction BIGINT, first_at TIMESTAMP(3), last_at TIMESTAMP(3), n BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO bursts
SELECT * FROM bid MATCH_RECOGNIZE (
    PARTITION BY auction ORDER BY date_time
    MEASURES FIRST(A.date_time) AS first_at, LAST(B.date_time) AS last_at, COUNT(*) AS n
    PATTERN (A B+) WITHIN INTERVAL '2' SECOND
    DEFINE B AS B.date_time > PREV(B.date_time));
