-- A statement set: its INSERTs run as one job, reading bid once (as in Flink); the job
-- writes 20 rows (9 cheap, 11 dear), the second 10 (4 and 6).
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');
CREATE TABLE cheap (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE dear (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');

EXECUTE STATEMENT SET BEGIN
  INSERT INTO cheap SELECT auction, price FROM bid WHERE price < 100;
  INSERT INTO dear SELECT auction, price FROM bid WHERE price >= 100;
END;

BEGIN STATEMENT SET;
INSERT INTO cheap SELECT auction, price FROM bid WHERE price < 50;
INSERT INTO dear SELECT auction, price FROM bid WHERE price >= 150;
END;
