-- JSON_VALUE with RETURNING, ON EMPTY and ON ERROR, and lax / strict paths: the examples of
-- Flink's function reference (expected value in the comment), then over a column.

SELECT JSON_VALUE('{}', 'lax $.colors[0]' DEFAULT 'default' ON EMPTY) AS e1,         -- 'default'
       JSON_VALUE('{}', 'strict $.colors[0]' DEFAULT 'default' ON ERROR) AS e2,      -- 'default'
       JSON_VALUE('{"a.b": [0.998,0.996]}', '$.["a.b"][0]' RETURNING DOUBLE) AS d,   -- 0.998
       JSON_VALUE('{"a": true}', '$.a') AS t1,                                       -- 'true'
       JSON_VALUE('{"a": true}', 'lax $.a' RETURNING BOOLEAN) AS t2;                 -- TRUE

-- Empty: a missing path in lax mode, a JSON null, an object or array in lax mode. Error: a
-- missing path in strict mode, an object in strict mode, text that is not JSON, a value that
-- is not of the RETURNING type.
SELECT JSON_VALUE('{"a": null}', '$.a' DEFAULT 'e' ON EMPTY DEFAULT 'x' ON ERROR) AS null_is_empty,
       JSON_VALUE('{"a": {"b": 1}}', 'lax $.a' DEFAULT 'e' ON EMPTY DEFAULT 'x' ON ERROR) AS lax_object,
       JSON_VALUE('{"a": {"b": 1}}', 'strict $.a' DEFAULT 'e' ON EMPTY DEFAULT 'x' ON ERROR) AS strict_object,
       JSON_VALUE('not json', '$.a' DEFAULT 'e' ON EMPTY DEFAULT 'x' ON ERROR) AS not_json,
       JSON_VALUE('{"a": "abc"}', '$.a' RETURNING INT DEFAULT -1 ON ERROR) AS not_an_int,
       JSON_VALUE('{"a": "42"}', '$.a' RETURNING INT) AS int_from_text,
       JSON_VALUE('{"a": 7}', '$.b' RETURNING BIGINT NULL ON EMPTY) AS empty_is_null;

-- Over a column, with a default taken from another column.
CREATE VIEW docs AS SELECT * FROM (VALUES (1, '{"temp": 21.5, "unit": "C"}'),
  (2, '{"temp": "warm"}'), (3, '{"unit": "F"}'), (4, 'oops'), (5, CAST(NULL AS STRING))) AS t(id, doc);
SELECT id,
       JSON_VALUE(doc, '$.temp' RETURNING DOUBLE DEFAULT -1.0 ON EMPTY DEFAULT -2.0 ON ERROR) AS temp,
       JSON_VALUE(doc, '$.unit' DEFAULT CAST(id AS STRING) ON EMPTY) AS unit
FROM docs;

-- ERROR ON EMPTY fails the query with a message naming the path.
SELECT JSON_VALUE('{}', '$.missing' ERROR ON EMPTY) AS boom;
