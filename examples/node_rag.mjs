// node_rag.mjs — the retrieval half of a RAG pipeline on annex, from Node
// with better-sqlite3 (12.x).
//
//   cd examples && npm ci && node node_rag.mjs     (exit 0 when every check passes)
//
// The same program as python_rag.py: loads annex.so (env ANNEX_SO, default
// build/annex.so from the repository root) into an in-memory database, stores
// examples/corpus.json in a plain `documents` table and in an annex table
// `doc_index` (64-dim cosine embeddings, metadata source/year, the text as an
// auxiliary column), then runs a k-NN search, a filtered k-NN and a join back
// to documents, and checks its own answers against a brute-force search in
// JavaScript. Embeddings are the same deterministic hashed bag of words
// (FNV-1a) as python_rag.py, so both print the same answers. Float32Array
// vectors go in as BLOBs through a Buffer over the same memory, and come back
// as Buffers viewed as Float32Array. Any failed check exits 1.
//
// better-sqlite3 bundles its own SQLite (3.5x), which annex supports; its
// loadExtension() is enabled by default.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3');

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const DIMS = 64;
const STOP = new Set(('a an and as at by each for from in is it its of on or so the their ' +
  'them to until when where with').split(' '));

const failures = [];
function check(ok, what) {
  console.log(`  [${ok ? 'ok' : 'FAIL'}] ${what}`);
  if (!ok) failures.push(what);
}

function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h = Math.imul(h ^ b, 0x01000193) >>> 0;
  }
  return h;
}

// Lower-case words without stop words, plus each longer word's first five
// letters (a crude stem), exactly as python_rag.py.
function features(text) {
  const out = [];
  for (const w of text.toLowerCase().match(/[a-z0-9]+/g) ?? []) {
    if (STOP.has(w)) continue;
    out.push(w);
    if (w.length > 5) out.push(w.slice(0, 5) + '~');
  }
  return out;
}

// Hashed bag of words into DIMS dimensions, L2-normalised, as float32.
function embed(text) {
  const v = new Float64Array(DIMS);
  for (const f of features(text)) {
    const h = fnv1a32(f);
    v[h % DIMS] += (h >>> 16) & 1 ? 1 : -1;
  }
  let n = 0;
  for (const x of v) n += x * x;
  n = Math.sqrt(n);
  return Float32Array.from(v, (x) => (n > 0 ? x / n : x));
}

// A Float32Array as a BLOB: a Buffer over the same bytes (little-endian on
// every platform Node runs on), no copy.
const blob = (f32) => Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength);
// A BLOB back to a Float32Array (copied: the Buffer may be unaligned).
const floats = (buf) => new Float32Array(new Uint8Array(buf).buffer);

function cosineDistance(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return 1 - dot / Math.sqrt(na * nb);
}

// Exact cosine k-NN over [{id, vec}]: [{id, distance}], ties by smaller id.
function bruteForce(q, items, k) {
  return items.map(({ id, vec }) => ({ id, distance: cosineDistance(q, vec) }))
    .sort((x, y) => x.distance - y.distance || x.id - y.id)
    .slice(0, k);
}

function sameAnswer(got, want, what) {
  const ok = got.length === want.length &&
    got.every((r, i) => r.id === want[i].id && Math.abs(r.distance - want[i].distance) < 1e-5);
  check(ok, `${what} = brute force [${want.map((r) => r.id).join(', ')}]`);
}

function main() {
  const so = process.env.ANNEX_SO || join(root, 'build', 'annex.so');
  if (!existsSync(so)) {
    console.error(`node_rag.mjs: no annex.so at ${so} (build it, or set ANNEX_SO)`);
    return 1;
  }
  const corpus = JSON.parse(readFileSync(join(here, 'corpus.json'), 'utf8'));
  const byId = new Map(corpus.map((d) => [d.id, d]));

  const db = new Database(':memory:');
  db.loadExtension(so);
  const version = db.prepare('SELECT annex_version()').pluck().get();
  const sqliteVersion = db.prepare('SELECT sqlite_version()').pluck().get();
  const bsVersion = require('better-sqlite3/package.json').version;
  console.log(`annex ${version} on SQLite ${sqliteVersion} (Node ${process.versions.node}, ` +
              `better-sqlite3 ${bsVersion})`);

  db.exec(`
    CREATE TABLE documents(id INTEGER PRIMARY KEY, title TEXT NOT NULL,
                           source TEXT NOT NULL, year INTEGER NOT NULL,
                           text TEXT NOT NULL);
    CREATE VIRTUAL TABLE doc_index USING annex(
      embedding float[64] distance=cosine,   -- the vector column
      source text, year integer,             -- metadata: filterable
      +text text                             -- auxiliary: returned only
    );
  `);
  const items = corpus.map((d) => ({ id: d.id, vec: embed(`${d.title} ${d.text}`) }));
  const insDoc = db.prepare('INSERT INTO documents VALUES (?, ?, ?, ?, ?)');
  const insVec = db.prepare(
    'INSERT INTO doc_index(rowid, embedding, source, year, text) VALUES (?, ?, ?, ?, ?)');
  db.transaction(() => {
    corpus.forEach((d, i) => {
      insDoc.run(d.id, d.title, d.source, d.year, d.text);
      insVec.run(d.id, blob(items[i].vec), d.source, d.year, d.text);  // Float32Array -> BLOB
    });
  })();
  const kernels = db.prepare(
    "SELECT value FROM annex_info('doc_index') WHERE key = 'kernels'").pluck().get();
  console.log(`${corpus.length} documents, ${DIMS} dimensions, cosine distance, kernels: ${kernels}`);

  // better-sqlite3 binds every JS number as a REAL, and annex takes k only
  // as an INTEGER (k = 3.0 is refused), so k is passed as a BigInt (3n).
  // Other numbers are fine: rowid and integer columns convert 2019.0 to 2019.
  const knn = db.prepare(
    'SELECT rowid AS id, distance FROM doc_index WHERE embedding MATCH ? AND k = ? ORDER BY distance');

  console.log('\n1. every document is its own nearest neighbour');
  const stored = db.prepare('SELECT rowid AS id, embedding FROM doc_index ORDER BY rowid').all();
  check(stored.map((r) => r.id).join() === corpus.map((d) => d.id).join(),
        "the stored rowids are the documents' ids");
  check(stored.every((r, i) => floats(r.embedding).every((x, j) => x === items[i].vec[j])),
        'the stored BLOBs read back as the same float32 arrays');
  check(items.every(({ id, vec }) => {
    const [first] = knn.all(blob(vec), 1n);
    return first.id === id && first.distance < 1e-5;
  }), "k = 1 with each document's own vector returns that document at distance 0");

  const question = 'Which nearest neighbour search finds embeddings for retrieval augmented generation?';
  const q = embed(question);
  console.log(`\n2. k-NN: '${question}'`);
  const hits = knn.all(blob(q), 3n);
  for (const h of hits) {
    console.log(`   ${String(h.id).padStart(2)}  ${h.distance.toFixed(4)}  ${byId.get(h.id).title}`);
  }
  sameAnswer(hits, bruteForce(q, items, 3), 'the 3 nearest');
  check(hits[0].id === 6, "the best match is 'Retrieval augmented generation'");
  check(hits.every((h) => byId.get(h.id).topic === 'vectors'), 'all 3 are about vector search');
  check(hits.every((h, i) => i === 0 || hits[i - 1].distance <= h.distance), 'sorted by distance');

  console.log('\n3. filtered k-NN: the same question, blog posts from 2022 on');
  const fhits = db.prepare(
    `SELECT rowid AS id, distance, source, year FROM doc_index
      WHERE embedding MATCH ? AND k = 3 AND source = 'blog' AND year >= 2022
      ORDER BY distance`).all(blob(q));
  for (const h of fhits) {
    console.log(`   ${String(h.id).padStart(2)}  ${h.distance.toFixed(4)}  ${h.source.padEnd(4)} ` +
                `${h.year}  ${byId.get(h.id).title}`);
  }
  const sel = items.filter(({ id }) => byId.get(id).source === 'blog' && byId.get(id).year >= 2022);
  check(fhits.length === 3, `k = 3 rows come back (${sel.length} documents match the filter)`);
  check(fhits.every((h) => h.source === 'blog' && h.year >= 2022), 'every row matches the filter');
  sameAnswer(fhits, bruteForce(q, sel, 3), 'the filtered 3');

  console.log('\n4. RAG context: join the hits back to documents for their text');
  const rows = db.prepare(`
    WITH hits AS MATERIALIZED (
      SELECT rowid AS id, distance, text FROM doc_index
       WHERE embedding MATCH @q AND k = @k AND year >= @since)
    SELECT d.id, d.title, d.source, d.year, h.distance, h.text = d.text AS same
      FROM hits AS h JOIN documents AS d ON d.id = h.id
     ORDER BY h.distance, d.id`).all({ q: blob(q), k: 2n, since: 2019 });
  const context = rows.map((r, i) => {
    console.log(`   [${i + 1}] ${r.title} (${r.source}, ${r.year}), distance ${r.distance.toFixed(4)}`);
    return `[${i + 1}] ${r.title}: ${byId.get(r.id).text}`;
  });
  check(rows.length === 2 && rows.every((r) => r.same === 1),
        "2 hits joined to documents; the auxiliary text equals the documents' text");
  sameAnswer(rows, bruteForce(q, items.filter(({ id }) => byId.get(id).year >= 2019), 2),
             'the joined hits');
  console.log('   prompt for the model:\n     ' +
              ['Answer from these sources.', ...context, `Question: ${question}`].join('\n     '));

  console.log('\n5. the table is consistent');
  db.exec("INSERT INTO doc_index(doc_index) VALUES ('integrity-check')");
  check(true, 'integrity-check passed');
  db.close();

  if (failures.length) {
    console.log(`\nnode_rag.mjs: ${failures.length} check(s) FAILED`);
    return 1;
  }
  console.log('\nnode_rag.mjs: all checks passed');
  return 0;
}

try {
  process.exitCode = main();
} catch (e) {
  console.error(`node_rag.mjs: ${e.stack || e}`);
  process.exitCode = 1;
}
