-- Flink's built-in functions where DataFusion's answer differently. Each expected value is
-- the example of Flink's function reference (1.20), checked by hand.

-- REGEXP_REPLACE replaces every match; the replacement is literal. CHR takes the low 8 bits.
-- LEFT / RIGHT with a negative length give ''.
SELECT REGEXP_REPLACE('foobar', 'oo|ar', '') AS r1,
       REGEXP_REPLACE('a.b.c', '\.', '$1') AS r2,
       CHR(97) AS c1, CHR(353) AS c2,
       LEFT('Hello', 2) AS l1, LEFT('Hello', -1) AS l2,
       RIGHT('Hello', 3) AS r3, RIGHT('Hello', -1) AS r4;

-- ARRAY_REMOVE removes every equal element.
SELECT ARRAY_REMOVE(ARRAY[1, 2, 2, 3, 2], 2) AS a;

-- AVG and SUM keep an integer argument's type: AVG(1, 2, 2) = 5 / 3 = 1.
SELECT AVG(x) AS avg_x, SUM(x) AS sum_x, AVG(y) AS avg_y, MIN(x) AS min_x, COUNT(*) AS n
FROM (VALUES (1, CAST(1 AS DOUBLE)), (2, CAST(2 AS DOUBLE)), (2, CAST(2 AS DOUBLE))) AS t(x, y);

-- AVG of a DECIMAL has scale max(s, 6), rounded half up (6.5 / 3 = 2.166667); SUM of a
-- DECIMAL keeps its scale.
SELECT AVG(d) AS avg_d, SUM(d) AS sum_d FROM (VALUES (1.5), (2.5), (2.5)) AS t(d);

-- Unaliased expressions are named EXPR$<position>, as Flink names them.
SELECT MOD(7, 3), 7 % 3, 'Hello';

-- CAST of a TIMESTAMP(p) to STRING: a space, and the fraction padded to p digits.
SELECT CAST(CAST('2020-01-01 10:00:00.5' AS TIMESTAMP(3)) AS STRING) AS t3,
       CAST(CAST('2020-01-01 10:00:00' AS TIMESTAMP(0)) AS STRING) AS t0,
       CAST(TRUE AS STRING) AS b;

-- TO_DATE and TO_TIMESTAMP take Java date patterns; a string that does not parse is NULL.
SELECT TO_DATE('01/02/2024', 'dd/MM/yyyy') AS d1, TO_DATE('2024-02-01') AS d2,
       TO_TIMESTAMP('2024/02/01 13:45', 'yyyy/MM/dd HH:mm') AS t1,
       TO_TIMESTAMP('2024-02-01 13:45:10.250') AS t2,
       TO_TIMESTAMP('not a time') AS t3;
