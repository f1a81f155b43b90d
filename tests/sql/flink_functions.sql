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

-- Flink's reference examples of functions DataFusion lacks or spells differently.
SELECT IF(5 > 3, 5, 3) AS if_, LOCATE('b', 'abcb') AS loc1, LOCATE('b', 'abcb', 3) AS loc2,
       REGEXP('abc', 'b.') AS re, TRUNCATE(CAST(42.324 AS DOUBLE), 2) AS tr,
       CEILING(CAST(1.2 AS DOUBLE)) AS ce;

SELECT YEAR(DATE '1994-09-27') AS y, QUARTER(DATE '1994-09-27') AS q,
       MONTH(DATE '1994-09-27') AS m, WEEK(DATE '1994-09-27') AS w,
       DAYOFYEAR(DATE '1994-09-27') AS doy, DAYOFMONTH(DATE '1994-09-27') AS dom,
       DAYOFWEEK(DATE '1994-09-27') AS dow;

SELECT TIMESTAMPDIFF(DAY, TIMESTAMP '2003-01-02 10:00:00', TIMESTAMP '2003-01-03 10:00:00') AS d,
       TIMESTAMPDIFF(MONTH, TIMESTAMP '2003-01-31 10:00:00', TIMESTAMP '2003-03-01 10:00:00') AS m,
       TIMESTAMPADD(WEEK, 1, TIMESTAMP '2003-01-02 00:00:00') AS plus_week,
       UNIX_TIMESTAMP('2020-01-01 00:00:00') AS ut, FROM_UNIXTIME(44) AS fu;

SELECT JSON_VALUE('{"a": true}', '$.a') AS jv, JSON_VALUE('{"a": [1, {"b": "x"}]}', '$.a[1].b') AS jv2,
       JSON_EXISTS('{"a": true}', '$.a') AS je1, JSON_EXISTS('{"a": true}', '$.b') AS je2,
       JSON_QUERY('{ "a": { "b": 1 } }', '$.a') AS jq;

SELECT PARSE_URL('http://facebook.com/path1/p.php?k1=v1&k2=v2#Ref1', 'HOST') AS host,
       PARSE_URL('http://facebook.com/path1/p.php?k1=v1&k2=v2#Ref1', 'QUERY', 'k1') AS k1,
       MD5('') AS md5_empty, SHA256('abc') AS sha, SHA2('abc', 224) AS sha224;
-- REGEXP_EXTRACT: Flink's example ('bar'); without an index the whole match; a group that
-- took no part in the match, a missing group, no match and a bad pattern are NULL; the
-- pattern and index may be columns.
SELECT REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)', 2) AS x1, REGEXP_EXTRACT('foothebar', 'the') AS x2,
       REGEXP_EXTRACT('b', '(a)?(b)', 2) AS x3, REGEXP_EXTRACT('b', '(a)?(b)', 1) AS x4,
       REGEXP_EXTRACT('abc', '(b)', 2) AS x5, REGEXP_EXTRACT('abc', 'x(y)', 1) AS x6,
       REGEXP_EXTRACT('abc', '(', 1) AS x7, REGEXP_EXTRACT('abc', '(b)', -1) AS x8;
SELECT s, REGEXP_EXTRACT(s, p, i) AS x
FROM (VALUES ('k1=v1&k2=v2', 'k2=([^&]*)', 1), ('k1=v1&k2=v2', '(k1)=([^&]*)', 2),
             ('k1=v1', 'k2=([^&]*)', 1), (CAST(NULL AS STRING), 'a', 0), ('aa', 'a+', 0)) AS t(s, p, i);
-- ---
SELECT JSON_OBJECTAGG(KEY 'a' VALUE 1);
-- ---
SELECT NO_SUCH_FUNCTION(1);
-- ---
-- FLOOR / CEIL of a timestamp to a unit.
SELECT FLOOR(TIMESTAMP '2020-01-01 10:11:12' TO HOUR) AS f_hour,
       CEIL(TIMESTAMP '2020-01-01 10:11:12' TO HOUR) AS c_hour,
       CEIL(TIMESTAMP '2020-01-01 10:00:00' TO HOUR) AS c_exact,
       FLOOR(TIMESTAMP '2020-05-17 10:11:12' TO MONTH) AS f_month;

-- CASE x WHEN with several values; BETWEEN SYMMETRIC takes its bounds in either order.
SELECT CASE 2 WHEN 1, 2 THEN 'low' WHEN 3 THEN 'three' ELSE 'high' END AS c1,
       CASE 5 WHEN 1, 2 THEN 'low' ELSE 'high' END AS c2,
       CASE WHEN 1 > 2 THEN 'x' END AS c3,
       5 BETWEEN SYMMETRIC 10 AND 1 AS b1, 5 BETWEEN 10 AND 1 AS b2,
       5 NOT BETWEEN SYMMETRIC 10 AND 1 AS b3;

-- Interval ranges: DAY TO SECOND, HOUR TO MINUTE, YEAR TO MONTH.
SELECT TIMESTAMP '2020-01-01 00:00:00' + INTERVAL '1 02:03:04' DAY TO SECOND AS a,
       TIMESTAMP '2020-01-01 00:00:00' - INTERVAL '10:30' HOUR TO MINUTE AS b,
       DATE '2020-01-31' + INTERVAL '1-1' YEAR TO MONTH AS c;
