-- VALUES and a SELECT without FROM are bounded inputs, usable in views and joins.
SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(id, name);
SELECT 'Hello' AS greeting, 1 + 1 AS two;
CREATE VIEW v AS SELECT id, name FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) AS t(id, name);
SELECT name, id * 10 AS x FROM v WHERE id > 1;
SELECT name, COUNT(*) AS n FROM v GROUP BY name HAVING COUNT(*) > 0;
-- ---
-- Each connector declares its options: an unknown connector, a misspelt option and a value of
-- the wrong kind are refused at CREATE TABLE, naming the option's line and column.
CREATE TABLE bad (x INT) WITH ('connector' = 'nosuch');
-- ---
CREATE TABLE k (x INT) WITH ('connector' = 'kafka', 'topic' = 't',
  'scan.startup.mod' = 'latest-offset');
-- ---
CREATE TABLE f (x INT) WITH ('connector' = 'filesystem', 'path' = '/tmp',
  'source.monitor-interval' = 'often');
-- ---
CREATE TABLE n (x INT) WITH ('connector' = 'nexmark', 'nexmark.table' = 'bids');
