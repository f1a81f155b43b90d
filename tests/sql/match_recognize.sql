-- MATCH_RECOGNIZE, with the examples of Flink's "Detecting Patterns in Tables" page and their
-- documented answers.
CREATE TABLE ticker (symbol STRING, rowtime TIMESTAMP(3), price BIGINT, tax BIGINT,
  WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/ticker.json', 'format' = 'json');

-- A V shape (Flink's answer: ACME | 10:00:04 | 10:00:07 | 10:00:08).
SELECT *
FROM ticker
    MATCH_RECOGNIZE (
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            START_ROW.rowtime AS start_tstamp,
            LAST(PRICE_DOWN.rowtime) AS bottom_tstamp,
            LAST(PRICE_UP.rowtime) AS end_tstamp
        ONE ROW PER MATCH
        AFTER MATCH SKIP TO LAST PRICE_UP
        PATTERN (START_ROW PRICE_DOWN+ PRICE_UP)
        DEFINE
            PRICE_DOWN AS
                (LAST(PRICE_DOWN.price, 1) IS NULL AND PRICE_DOWN.price < START_ROW.price) OR
                    PRICE_DOWN.price < LAST(PRICE_DOWN.price, 1),
            PRICE_UP AS
                PRICE_UP.price > LAST(PRICE_DOWN.price, 1)
    ) MR;

-- Aggregations (Flink's answer: 10:00:00 | 10:00:03 | 14.5 and 10:00:05 | 10:00:10 | 13.5).
CREATE TABLE ticker_avg (symbol STRING, rowtime TIMESTAMP(3), price BIGINT, tax BIGINT,
  WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/ticker_avg.json', 'format' = 'json');

SELECT *
FROM ticker_avg
    MATCH_RECOGNIZE (
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            FIRST(A.rowtime) AS start_tstamp,
            LAST(A.rowtime) AS end_tstamp,
            AVG(A.price) AS avgPrice
        ONE ROW PER MATCH
        AFTER MATCH SKIP PAST LAST ROW
        PATTERN (A+ B)
        DEFINE
            A AS AVG(A.price) < 15
    ) MR;

-- Rises of three prices in a row, with PREV, COUNT, SUM and MATCH_ROWTIME (a time attribute,
-- windowed downstream); AFTER MATCH SKIP TO NEXT ROW lets matches overlap.
CREATE VIEW rises AS
SELECT * FROM ticker
    MATCH_RECOGNIZE (
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            FIRST(UP.price) AS first_price,
            LAST(UP.price) AS last_price,
            COUNT(UP.price) AS n,
            SUM(UP.tax) AS taxes,
            MATCH_ROWTIME() AS matched_at
        AFTER MATCH SKIP TO NEXT ROW
        PATTERN (UP{3})
        DEFINE UP AS UP.price > PREV(UP.price)
    );

SELECT * FROM rises;

SELECT window_start, COUNT(*) AS matches
FROM TABLE(TUMBLE(TABLE rises, DESCRIPTOR(matched_at), INTERVAL '5' SECOND))
GROUP BY window_start, window_end;

-- WITHIN: a match spans less than the interval of event time. The V shape from 10:00:04 to
-- 10:00:08 spans 4 s: found WITHIN 5 seconds; WITHIN 4 it is too long, and the search that
-- starts at 10:00:05 finds the shorter V (10:00:05 to 10:00:08) instead.
SELECT * FROM ticker MATCH_RECOGNIZE (PARTITION BY symbol ORDER BY rowtime
  MEASURES FIRST(D.rowtime) AS first_down, LAST(U.rowtime) AS up
  PATTERN (S D+ U) WITHIN INTERVAL '5' SECOND
  DEFINE D AS D.price < PREV(D.price), U AS U.price > PREV(U.price));
SELECT * FROM ticker MATCH_RECOGNIZE (PARTITION BY symbol ORDER BY rowtime
  MEASURES FIRST(D.rowtime) AS first_down, LAST(U.rowtime) AS up
  PATTERN (S D+ U) WITHIN INTERVAL '4' SECOND
  DEFINE D AS D.price < PREV(D.price), U AS U.price > PREV(U.price));

-- Greedy and reluctant quantifiers (Flink's example: lastPrice 16 with B*, 13 with B*?; after
-- the reluctant match, the search from 14 finds A = 14, C = 16 as well).
CREATE TABLE ticker_xyz (symbol STRING, rowtime TIMESTAMP(3), price BIGINT, tax BIGINT,
  WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/ticker_xyz.json', 'format' = 'json');

SELECT * FROM ticker_xyz MATCH_RECOGNIZE (PARTITION BY symbol ORDER BY rowtime
  MEASURES C.price AS lastPrice ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
  PATTERN (A B* C) DEFINE A AS A.price > 10, B AS B.price < 15, C AS C.price > 12);

SELECT * FROM ticker_xyz MATCH_RECOGNIZE (PARTITION BY symbol ORDER BY rowtime
  MEASURES C.price AS lastPrice ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
  PATTERN (A B*? C) DEFINE A AS A.price > 10, B AS B.price < 15, C AS C.price > 12);

-- Not supported yet, each saying so.
SELECT * FROM ticker MATCH_RECOGNIZE (PARTITION BY symbol ORDER BY rowtime
  MEASURES A.price AS p ALL ROWS PER MATCH PATTERN (A B) DEFINE A AS A.price > 10);
SELECT * FROM ticker MATCH_RECOGNIZE (PARTITION BY symbol ORDER BY rowtime
  MEASURES A.price AS p PATTERN (A | B) DEFINE A AS A.price > 10);
SELECT * FROM ticker MATCH_RECOGNIZE (PARTITION BY symbol ORDER BY rowtime
  MEASURES A.price AS p PATTERN (A B) DEFINE A AS UPPER(A.symbol) = 'ACME');
