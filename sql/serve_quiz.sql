-- A quiz service on `weir serve`: students' answers are POSTed to the `answers` table; each
-- question's results per quiz window are served live the moment the window closes
-- (the watermark, the latest answer time minus 2 s, passes its end). When answers stop for
-- 5 s the watermark follows the wall clock instead, so the last window closes too.
--
--   weir serve sql/serve_quiz.sql
--   curl -X POST localhost:8080/v1/tables/answers/records --data-binary @answers.ndjson
--   curl -N localhost:8080/v1/tables/question_results/subscribe          # live (SSE)
--   curl 'localhost:8080/v1/tables/question_results?key=quiz-7,3'        # one question
CREATE TABLE answers (
  quiz_id     STRING,
  question_id INT,
  student_id  STRING,
  correct     BOOLEAN,
  answered_at TIMESTAMP(3),
  WATERMARK FOR answered_at AS answered_at - INTERVAL '2' SECOND
) WITH (
  'connector' = 'http',
  'format' = 'json',
  'scan.watermark.idle-advance' = 'true',
  'scan.watermark.idle-timeout' = '5 s'
);

-- The latest window's results per quiz and question (GET ?key=quiz_id,question_id).
CREATE TABLE question_results (
  quiz_id      STRING,
  question_id  INT,
  window_start TIMESTAMP(3),
  answers      BIGINT,
  correct      BIGINT,
  pct_correct  DOUBLE,
  PRIMARY KEY (quiz_id, question_id) NOT ENFORCED
) WITH ('connector' = 'http');

INSERT INTO question_results
SELECT quiz_id, question_id, window_start, COUNT(*), COUNT(*) FILTER (WHERE correct),
       ROUND(100.0 * COUNT(*) FILTER (WHERE correct) / COUNT(*), 1)
FROM TABLE(TUMBLE(TABLE answers, DESCRIPTOR(answered_at), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, quiz_id, question_id;
