-- smoke.sql — run by amalgamation/test.sh in the stock sqlite3 shell after
-- ".load" of the amalgamation's annex.so; its output must equal
-- smoke.expected line for line. Prints only what does not depend on the
-- kernel set in force (native SIMD, or portable under qemu), so the same
-- file checks every dispatch target.
.headers off
.mode list
.bail on

SELECT 'version ' || (annex_version() GLOB '[0-9]*.[0-9]*.[0-9]*');

-- the README's tour table
CREATE VIRTUAL TABLE docs USING annex(
  embedding float[4] distance=l2, index=flat,
  category text, year integer, +body text);
INSERT INTO docs(rowid, embedding, category, year, body) VALUES
  (1, '[0.1, 0.2, 0.3, 0.4]', 'news',  2021, 'first'),
  (2, '[0.9, 0.1, 0.0, 0.2]', 'blog',  2019, 'second'),
  (3, '[0.1, 0.25, 0.3, 0.5]', 'news', 2023, 'third'),
  (4, annex_vector('[0.5, 0.5, 0.5, 0.5]'), 'blog', 2024, 'fourth');

SELECT 'knn', rowid, printf('%.6f', distance), body FROM docs
 WHERE embedding MATCH '[0.1, 0.2, 0.3, 0.45]' AND k = 3;
SELECT 'filtered', rowid, printf('%.6f', distance) FROM docs
 WHERE embedding MATCH '[0.1, 0.2, 0.3, 0.45]' AND k = 2
   AND category = 'blog' AND year >= 2020;
SELECT 'radius', rowid, printf('%.6f', distance) FROM docs
 WHERE embedding MATCH '[0.1, 0.2, 0.3, 0.45]' AND distance < 0.1;
UPDATE docs SET year = 2025 WHERE rowid = 2;
DELETE FROM docs WHERE rowid = 3;
SELECT 'rows', rowid, category, year, body, annex_json(embedding) FROM docs ORDER BY rowid;
INSERT INTO docs(docs) VALUES ('integrity-check');
SELECT 'integrity-check docs ok';

-- 2000 cosine vectors of 37 dims (not a multiple of any SIMD width, so
-- every kernel's tail runs), values from integer arithmetic only
CREATE VIRTUAL TABLE big USING annex(embedding float[37] distance=cosine,
                                     grp integer, chunk_size=64);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000),
     d(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM d WHERE j < 36)
INSERT INTO big(rowid, embedding, grp)
SELECT i, (SELECT '[' || group_concat(((i * 7919 + j * 104729 + i * j * 31) % 1009) / 1009.0 - 0.5, ',') || ']'
             FROM d), i % 5
  FROM n;
SELECT 'big rows', count(*) FROM big;

-- a stored vector finds its own row first, at distance 0
SELECT 'self', rowid, printf('%.4f', distance) FROM big
 WHERE embedding MATCH (SELECT embedding FROM big WHERE rowid = 777) AND k = 1;

-- k-NN (the kernels) agrees with brute force (annex_distance) on ids and
-- distances, plain and filtered
WITH q(v) AS (SELECT embedding FROM big WHERE rowid = 1234),
knn AS (SELECT rowid AS id, distance AS dist, row_number() OVER (ORDER BY distance, rowid) AS r
          FROM big WHERE embedding MATCH (SELECT v FROM q) AND k = 25),
bf AS (SELECT rowid AS id, annex_distance(embedding, (SELECT v FROM q), 'cosine') AS dist,
              row_number() OVER (ORDER BY annex_distance(embedding, (SELECT v FROM q), 'cosine'), rowid) AS r
         FROM big)
SELECT 'knn vs brute force', count(*), sum(knn.id = bf.id), max(abs(knn.dist - bf.dist)) < 1e-5
  FROM knn JOIN bf ON bf.r = knn.r;
WITH q(v) AS (SELECT embedding FROM big WHERE rowid = 99),
knn AS (SELECT rowid AS id, row_number() OVER (ORDER BY distance, rowid) AS r
          FROM big WHERE embedding MATCH (SELECT v FROM q) AND k = 10 AND grp = 3),
bf AS (SELECT rowid AS id,
              row_number() OVER (ORDER BY annex_distance(embedding, (SELECT v FROM q), 'cosine'), rowid) AS r
         FROM big WHERE grp = 3)
SELECT 'filtered vs brute force', count(*), sum(knn.id = bf.id)
  FROM knn JOIN bf ON bf.r = knn.r;
DELETE FROM big WHERE rowid % 7 = 0;
INSERT INTO big(big) VALUES ('integrity-check');
SELECT 'integrity-check big ok', count(*) FROM big;

-- int8 and bit vectors
CREATE VIRTUAL TABLE i8 USING annex(v int8[20] distance=l2);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300),
     d(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM d WHERE j < 19)
INSERT INTO i8(rowid, v)
SELECT i, annex_int8((SELECT '[' || group_concat(((i * 2654435761 + j * 40503 + i * j * 97) % 65521) % 251 - 125, ',') || ']' FROM d))
  FROM n;
SELECT 'int8', rowid, printf('%.4f', distance) FROM i8
 WHERE v MATCH (SELECT v FROM i8 WHERE rowid = 42) AND k = 2;
CREATE VIRTUAL TABLE bits USING annex(v bit[72]);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300),
     d(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM d WHERE j < 71)
INSERT INTO bits(rowid, v)
SELECT i, annex_bit((SELECT '[' || group_concat(((i * 2654435761 + j * 40503 + i * j * 97) % 65521) % 11 < 5, ',') || ']' FROM d))
  FROM n;
SELECT 'bit', rowid, distance FROM bits
 WHERE v MATCH (SELECT v FROM bits WHERE rowid = 5) AND k = 3;
INSERT INTO i8(i8) VALUES ('integrity-check');
INSERT INTO bits(bits) VALUES ('integrity-check');
SELECT 'integrity-check int8 bit ok';

SELECT 'done';
