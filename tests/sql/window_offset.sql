-- Window TVFs with an OFFSET: Flink's documentation example (Window Offset, Bid table).
CREATE TABLE Bid (bidtime TIMESTAMP(3), price DECIMAL(10, 2), item STRING,
  WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$DATA/flink_bid.csv', 'format' = 'csv');

-- Flink: 08:01–08:11 and 08:11–08:21 for every row.
SELECT * FROM TABLE(
  TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES, INTERVAL '1' MINUTES));

-- Flink: 08:01–08:11 11.00, 08:11–08:21 10.00.
SELECT window_start, window_end, SUM(price) AS total_price
  FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES, INTERVAL '1' MINUTES))
  GROUP BY window_start, window_end;

-- Named arguments, a negative offset.
SELECT window_start, window_end, SUM(price) AS total_price
  FROM TABLE(
    TUMBLE(DATA => TABLE Bid, TIMECOL => DESCRIPTOR(bidtime), SIZE => INTERVAL '10' MINUTES,
           OFFSET => INTERVAL '-2' MINUTES))
  GROUP BY window_start, window_end;

SELECT window_start, window_end, SUM(price) AS total_price
  FROM TABLE(
    HOP(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES, INTERVAL '10' MINUTES,
        INTERVAL '1' MINUTES))
  GROUP BY window_start, window_end;

SELECT window_start, window_end, SUM(price) AS total_price
  FROM TABLE(
    CUMULATE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '2' MINUTES, INTERVAL '10' MINUTES,
             INTERVAL '1' MINUTES))
  GROUP BY window_start, window_end;
