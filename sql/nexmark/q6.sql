-- Nexmark q6: average selling price per seller over its last 10 closed auctions.
-- An OVER (ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) window over an updating input (each
-- auction's final price changes as bids arrive), which Flink refuses: weir keeps the result
-- equal to the batch answer over the auctions so far, as a changelog. (Flink's text selects
-- B.date_time without grouping it; it is MAX(B.date_time) here so that the query is valid SQL.)
CREATE TABLE auction (
    id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT,
    date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'nexmark.events' = '10000000');

CREATE TABLE bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'nexmark.events' = '10000000');

CREATE TABLE nexmark_q6 (seller BIGINT, avg_price BIGINT) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q6
SELECT Q.seller, AVG(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)
FROM (
    SELECT MAX(B.price) AS final, A.seller, MAX(B.date_time) AS date_time
    FROM auction AS A, bid AS B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.seller
) AS Q;
