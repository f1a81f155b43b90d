-- Live quiz results: teachers see each quiz's and each question's results as answers stream in.
-- Answers arrive up to two seconds out of order; every minute of answers is reported once the
-- watermark (latest answer time minus 2 s) has passed it.
CREATE TABLE answers (
  quiz_id     STRING,
  question_id INT,
  student_id  STRING,
  correct     BOOLEAN,
  answered_at TIMESTAMP(3),
  WATERMARK FOR answered_at AS answered_at - INTERVAL '2' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = 'sql/data/quiz_answers.json',
  'format' = 'json'
);

CREATE TABLE quiz_board (
  quiz_id STRING, minute_start TIMESTAMP(3), answers BIGINT, students BIGINT, pct_correct DOUBLE
) WITH ('connector' = 'print', 'print-identifier' = 'quiz');

CREATE TABLE question_board (
  quiz_id STRING, question_id INT, minute_start TIMESTAMP(3), answers BIGINT, correct BIGINT
) WITH ('connector' = 'print', 'print-identifier' = 'question');

-- Per quiz, per minute.
INSERT INTO quiz_board
SELECT quiz_id, window_start, COUNT(*), COUNT(DISTINCT student_id),
       ROUND(100.0 * SUM(CASE WHEN correct THEN 1 ELSE 0 END) / COUNT(*), 1)
FROM TABLE(TUMBLE(TABLE answers, DESCRIPTOR(answered_at), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, quiz_id;

-- Per question, per minute (legacy group-window syntax).
INSERT INTO question_board
SELECT quiz_id, question_id, TUMBLE_START(answered_at, INTERVAL '1' MINUTE),
       COUNT(*), COUNT(*) FILTER (WHERE correct)
FROM answers
GROUP BY quiz_id, question_id, TUMBLE(answered_at, INTERVAL '1' MINUTE);
