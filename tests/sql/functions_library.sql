-- More of Flink's built-in functions, each with the example of Flink's function reference
-- where it has one (the expected value in the comment).

-- Strings and bytes.
SELECT TO_BASE64('hello world') AS b64,            -- 'aGVsbG8gd29ybGQ='
       FROM_BASE64('aGVsbG8gd29ybGQ=') AS plain,   -- 'hello world'
       HEX(100) AS h1,                             -- '64'
       HEX('hello,world') AS h2,                   -- '68656C6C6F2C776F726C64'
       BIN(12) AS b1, BIN(4) AS b2,                -- '1100', '100'
       FROM_BASE64('not base64!') AS bad;          -- NULL

SELECT IS_ALPHA('abc') AS a1, IS_ALPHA('ab1') AS a2, IS_DIGIT('123') AS d1, IS_DIGIT('12.3') AS d2,
       IS_DECIMAL('12.3') AS m1, IS_DECIMAL('1e3') AS m2, IS_DECIMAL('x') AS m3,
       IS_DIGIT(CAST(NULL AS STRING)) AS d3;       -- NULL is false

SELECT DECODE(ENCODE('weir ✓', 'UTF-8'), 'UTF-8') AS utf8,
       DECODE(ENCODE('abc', 'UTF-16BE'), 'UTF-16BE') AS utf16,
       DECODE(ENCODE('abc', 'ISO-8859-1'), 'ISO-8859-1') AS latin1,
       SHA1('Flink') AS sha1;

-- Math.
SELECT SIGN(-3) AS s1, SIGN(CAST(2.5 AS DOUBLE)) AS s2, SIGN(0) AS s3, ROUND(E(), 5) AS e,
       RAND(7) < 1.0 AS r1, RAND_INTEGER(3, 10) BETWEEN 0 AND 9 AS r2;

-- Time: CONVERT_TZ('1970-01-01 00:00:00', 'UTC', 'America/Los_Angeles') = '1969-12-31 16:00:00'.
SELECT CONVERT_TZ('1970-01-01 00:00:00', 'UTC', 'America/Los_Angeles') AS la,
       CONVERT_TZ('2020-06-01 12:00:00', 'Europe/Berlin', 'GMT+08:00') AS cn,
       CONVERT_TZ('2020-06-01 12:00:00', 'UTC', 'Nowhere/City') AS bad;

-- Collections.
SELECT STR_TO_MAP('a=1,b=2') AS m1, STR_TO_MAP('k1:v1;k2:v2', ';', ':') AS m2,
       CARDINALITY(ARRAY[1, 2, 3]) AS c, ELEMENT(ARRAY[5]) AS e1,
       ELEMENT(CAST(ARRAY[] AS ARRAY<INT>)) AS e2,
       MAP_FROM_ARRAYS(ARRAY['a', 'b'], ARRAY[1, 2]) AS m3;

-- JSON constructors (Flink's examples).
SELECT JSON_STRING(CAST(NULL AS INT)) AS s1, JSON_STRING(1) AS s2, JSON_STRING(TRUE) AS s3,
       JSON_STRING('Hello, World!') AS s4, JSON_STRING(ARRAY[1, 2]) AS s5;

SELECT JSON_OBJECT() AS o1,                                                -- '{}'
       JSON_OBJECT('K1' VALUE 'V1', 'K2' VALUE 'V2') AS o2,                -- '{"K1":"V1","K2":"V2"}'
       JSON_OBJECT(KEY 'K1' VALUE CAST(NULL AS STRING) NULL ON NULL) AS o3,   -- '{"K1":null}'
       JSON_OBJECT(KEY 'K1' VALUE CAST(NULL AS STRING) ABSENT ON NULL) AS o4, -- '{}'
       JSON_OBJECT(KEY 'K1' VALUE JSON_OBJECT(KEY 'K2' VALUE 'V')) AS o5;  -- '{"K1":{"K2":"V"}}'

SELECT JSON_ARRAY() AS a1,                                        -- '[]'
       JSON_ARRAY(1, '2') AS a2,                                  -- '[1,"2"]'
       JSON_ARRAY(CAST(NULL AS STRING) NULL ON NULL) AS a3,       -- '[null]'
       JSON_ARRAY(CAST(NULL AS STRING) ABSENT ON NULL) AS a4,     -- '[]'
       JSON_ARRAY(JSON_ARRAY(1)) AS a5;                           -- '[[1]]'

-- IS JSON: true, true, true, true, false, false; SCALAR true; ARRAY / OBJECT false; …
SELECT '1' IS JSON AS j1, '[]' IS JSON AS j2, '{}' IS JSON AS j3, '"abc"' IS JSON AS j4,
       'abc' IS JSON AS j5, CAST(NULL AS STRING) IS JSON AS j6,
       '1' IS JSON SCALAR AS j7, '1' IS JSON ARRAY AS j8, '1' IS JSON OBJECT AS j9,
       '{}' IS JSON SCALAR AS j10, '{}' IS JSON ARRAY AS j11, '{}' IS JSON OBJECT AS j12,
       'abc' IS NOT JSON AS j13;

-- Aggregates: LISTAGG (',' by default), COLLECT (an ARRAY in weir), the spread of INT values
-- in their type (as Flink), and of DOUBLE values.
SELECT LISTAGG(x) AS l1, LISTAGG(x, '|') AS l2, COLLECT(x) AS c
FROM (VALUES ('a'), ('b'), ('c')) AS t(x);

SELECT VARIANCE(x) AS v, VAR_POP(x) AS vp, VAR_SAMP(x) AS vs, STDDEV_POP(x) AS sp,
       STDDEV_SAMP(x) AS ss
FROM (VALUES (1), (2), (4), (9)) AS t(x);

SELECT VAR_POP(x) AS vp, ROUND(STDDEV_SAMP(x), 4) AS ss
FROM (VALUES (CAST(1 AS DOUBLE)), (2), (4), (9)) AS t(x);

-- JSON aggregates (Flink's examples): JSON_ARRAYAGG drops NULLs by default, JSON_OBJECTAGG
-- keeps them; nested constructors stay JSON.
SELECT JSON_OBJECTAGG(KEY product VALUE cnt) AS o1,
       JSON_OBJECTAGG(KEY product VALUE cnt ABSENT ON NULL) AS o2,
       JSON_ARRAYAGG(product) AS a1, JSON_ARRAYAGG(cnt NULL ON NULL) AS a2,
       JSON_ARRAYAGG(JSON_OBJECT('p' VALUE product)) AS a3
FROM (VALUES ('Apple', 2), ('Banana', 17), ('Orange', CAST(NULL AS INT))) AS t(product, cnt);
