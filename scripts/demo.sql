-- demo.sql — a tour of annex in the stock sqlite3 shell (run by demo.sh).
-- The data is generated right here: 50,000 "documents" in 8 topics, each a
-- 64-dimensional vector (its topic's centre plus deterministic noise), with
-- metadata (category, year) and an auxiliary title.
.load ./build/annex
.mode box
.print '== annex'
SELECT annex_version() AS version;

CREATE VIRTUAL TABLE docs USING annex(
  embedding float[64] distance=l2,
  index=flat,
  category text, year integer,
  +title text
);

.print ''
.print '== load 50,000 generated documents (one transaction)'
.timer on
WITH RECURSIVE
  i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n < 49999),
  d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < 63)
INSERT INTO docs(rowid, embedding, category, year, title)
SELECT i.n + 1,
       (SELECT json_group_array(
                 ((i.n % 8) * 37 + d.n * 11) % 17 / 17.0
                 + ((i.n * 7919 + d.n * 104729 + i.n * d.n * 31) % 10007)
                   / 10007.0 * 0.6)
          FROM d),
       CASE i.n % 4 WHEN 0 THEN 'news' WHEN 1 THEN 'blog'
                    WHEN 2 THEN 'paper' ELSE 'forum' END,
       2015 + (i.n * 31) % 10,
       printf('document %d (topic %d)', i.n + 1, i.n % 8)
  FROM i;
.timer off
SELECT key, value FROM annex_info('docs')
 WHERE key IN ('rows', 'dimensions', 'metric', 'index', 'chunks',
               'bytes_chunks', 'kernels');

.print ''
.print '== the 5 nearest neighbours of document 42 (exact k-NN)'
.timer on
SELECT rowid, round(distance, 4) AS distance, category, year, title
  FROM docs
 WHERE embedding MATCH (SELECT embedding FROM docs WHERE rowid = 42)
   AND k = 5;

.print ''
.print '== the same, only papers from 2020 on (filters run inside the scan)'
SELECT rowid, round(distance, 4) AS distance, category, year, title
  FROM docs
 WHERE embedding MATCH (SELECT embedding FROM docs WHERE rowid = 42)
   AND k = 5 AND category = 'paper' AND year >= 2020;

.print ''
.print '== a JSON query vector, ORDER BY distance LIMIT 3'
SELECT rowid, round(distance, 4) AS distance, title
  FROM docs
 WHERE embedding MATCH (SELECT json_group_array(0.5) FROM
                          (WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL
                             SELECT n + 1 FROM d WHERE n < 63) SELECT n FROM d))
 ORDER BY distance LIMIT 3;

.print ''
.print '== everything within distance 2.7 of document 42, counted per topic'
SELECT substr(title, instr(title, '(')) AS topic, count(*) AS n,
       round(min(distance), 3) AS nearest
  FROM docs
 WHERE embedding MATCH (SELECT embedding FROM docs WHERE rowid = 42)
   AND distance < 2.7
 GROUP BY topic;

.print ''
.print '== writes are transactional: delete document 42, query, roll back'
CREATE TEMP TABLE q AS SELECT embedding AS v FROM docs WHERE rowid = 42;
BEGIN;
DELETE FROM docs WHERE rowid = 42;
SELECT rowid, round(distance, 4) AS distance FROM docs
 WHERE embedding MATCH (SELECT v FROM q) AND k = 3;
ROLLBACK;
SELECT rowid, round(distance, 4) AS distance FROM docs
 WHERE embedding MATCH (SELECT v FROM q) AND k = 3;
.timer off

.print ''
.print '== integrity-check of the shadow tables'
INSERT INTO docs(docs) VALUES ('integrity-check');
.print 'ok'
