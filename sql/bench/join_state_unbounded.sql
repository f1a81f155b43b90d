-- Unbounded: runs until stopped. A regular join of every bid with its bidder: no time bound
-- and no TTL, so both sides are kept whole and the state grows with the input (about 1 GB
-- after 5-6M bids). For checkpoint size, duration and restore time of a large state:
--   SET 'state.checkpoints.dir' = '...'; SET 'execution.checkpointing.interval' = '1 h';
--   then SIGINT (stop with a final checkpoint) and run again (restore).
CREATE TABLE bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark');

CREATE TABLE person (
    id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, state STRING,
    date_time TIMESTAMP(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark');

CREATE TABLE bid_with_bidder (auction BIGINT, price BIGINT, name STRING, city STRING)
WITH ('connector' = 'blackhole');

INSERT INTO bid_with_bidder
SELECT B.auction, B.price, P.name, P.city
FROM bid AS B INNER JOIN person AS P ON B.bidder = P.id;
