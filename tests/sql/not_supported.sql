-- What weir does not run yet says so ("not supported yet: ..."), never a wrong answer.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/bids_ooo.json', 'format' = 'json');

SELECT auction FROM bid b1 WHERE auction NOT IN
  (SELECT auction FROM bid b2 WHERE b2.price > b1.price);

SELECT auction, (SELECT MAX(price) FROM bid) AS top FROM bid;

SELECT auction, NTILE(2) OVER (PARTITION BY auction ORDER BY date_time) AS half FROM bid;

SELECT auction, SUM(price) OVER (PARTITION BY auction ORDER BY price) AS s FROM bid;
