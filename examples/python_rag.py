#!/usr/bin/python3
"""python_rag.py — the retrieval half of a RAG pipeline on annex, from
Python's standard sqlite3 module and NumPy.

    /usr/bin/python3 examples/python_rag.py      (exit 0 when every check passes)

Loads annex.so (env ANNEX_SO, default build/annex.so from the repository
root) into an in-memory database, stores the documents of
examples/corpus.json twice: a plain `documents` table (title, source, year,
text) and an annex table `doc_index` of embeddings with metadata (source,
year) and the text as an auxiliary column. Embeddings are deterministic
pseudo-embeddings: hashed bag of words (FNV-1a) into 64 dimensions,
L2-normalised, compared with cosine distance; node_rag.mjs computes the
same ones, so both print the same answers. NumPy float32 arrays go in as
BLOBs (arr.astype('<f4').tobytes()) and come back with np.frombuffer.

It then runs a k-NN search, a filtered k-NN, and a join back to documents
for the text to hand to a language model, and checks its own answers: every
document finds itself first, and each search returns exactly what a NumPy
brute-force search over the same vectors returns. Any failed check exits 1.

Debian's /usr/bin/python3 can load extensions (some other builds, such as
pyenv's default, are compiled without enable_load_extension).
"""
import json
import os
import re
import sqlite3
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DIMS = 64
STOP = set("a an and as at by each for from in is it its of on or so the their "
           "them to until when where with".split())

failures = []


def check(ok, what):
    print("  [%s] %s" % ("ok" if ok else "FAIL", what))
    if not ok:
        failures.append(what)


def fnv1a32(s):
    h = 0x811C9DC5
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def features(text):
    """Lower-case words without stop words, plus each longer word's first
    five letters (a crude stem: neighbour/neighbours share "neigh")."""
    out = []
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        if w in STOP:
            continue
        out.append(w)
        if len(w) > 5:
            out.append(w[:5] + "~")
    return out


def embed(text):
    """Hashed bag of words: each feature adds +-1 to one of DIMS dimensions
    (bucket and sign from its FNV-1a hash); the sum is L2-normalised."""
    v = np.zeros(DIMS, dtype=np.float64)
    for f in features(text):
        h = fnv1a32(f)
        v[h % DIMS] += 1.0 if (h >> 16) & 1 else -1.0
    n = np.sqrt(np.dot(v, v))
    return (v / n if n > 0 else v).astype("<f4")


def brute_force(q, vecs, ids, k):
    """Exact cosine k-NN in NumPy: (ids, distances), ties by smaller id."""
    qn = np.linalg.norm(q.astype(np.float64))
    vn = np.linalg.norm(vecs.astype(np.float64), axis=1)
    d = 1.0 - (vecs.astype(np.float64) @ q.astype(np.float64)) / (vn * qn)
    order = sorted(range(len(ids)), key=lambda i: (d[i], ids[i]))[:k]
    return [ids[i] for i in order], [float(d[i]) for i in order]


def same_answer(got, want, what):
    gids, gd = [r[0] for r in got], [r[1] for r in got]
    wids, wd = want
    check(gids == wids and all(abs(a - b) < 1e-5 for a, b in zip(gd, wd)),
          "%s = NumPy brute force %s" % (what, wids))


def main():
    so = os.environ.get("ANNEX_SO") or os.path.join(ROOT, "build", "annex.so")
    if not os.path.exists(so):
        sys.exit("python_rag.py: no annex.so at %s (build it, or set ANNEX_SO)" % so)
    with open(os.path.join(HERE, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)

    db = sqlite3.connect(":memory:")
    db.enable_load_extension(True)
    db.load_extension(so)
    db.enable_load_extension(False)
    version, = db.execute("SELECT annex_version()").fetchone()
    print("annex %s on SQLite %s (Python %s, NumPy %s)" % (
        version, sqlite3.sqlite_version, sys.version.split()[0], np.__version__))

    db.executescript("""
        CREATE TABLE documents(id INTEGER PRIMARY KEY, title TEXT NOT NULL,
                               source TEXT NOT NULL, year INTEGER NOT NULL,
                               text TEXT NOT NULL);
        CREATE VIRTUAL TABLE doc_index USING annex(
          embedding float[64] distance=cosine,   -- the vector column
          source text, year integer,             -- metadata: filterable
          +text text                             -- auxiliary: returned only
        );
    """)
    ids = [d["id"] for d in corpus]
    vecs = np.stack([embed(d["title"] + " " + d["text"]) for d in corpus])
    with db:
        db.executemany("INSERT INTO documents VALUES (?, ?, ?, ?, ?)",
                       [(d["id"], d["title"], d["source"], d["year"], d["text"])
                        for d in corpus])
        # NumPy float32 array -> little-endian float32 BLOB, as annex stores it
        db.executemany(
            "INSERT INTO doc_index(rowid, embedding, source, year, text) "
            "VALUES (?, ?, ?, ?, ?)",
            [(d["id"], v.astype("<f4").tobytes(), d["source"], d["year"], d["text"])
             for d, v in zip(corpus, vecs)])
    kernels, = db.execute(
        "SELECT value FROM annex_info('doc_index') WHERE key = 'kernels'").fetchone()
    print("%d documents, %d dimensions, cosine distance, kernels: %s" % (
        len(corpus), DIMS, kernels))

    knn = ("SELECT rowid, distance FROM doc_index "
           "WHERE embedding MATCH ? AND k = ?")

    print("\n1. every document is its own nearest neighbour")
    stored = db.execute("SELECT rowid, embedding FROM doc_index ORDER BY rowid").fetchall()
    check([r for r, _ in stored] == ids, "the stored rowids are the documents' ids")
    check(all(np.array_equal(np.frombuffer(b, dtype="<f4"), v)
              for (_, b), v in zip(stored, vecs)),
          "the stored BLOBs read back as the same float32 arrays")
    firsts = [db.execute(knn, (v.tobytes(), 1)).fetchone() for v in vecs]
    check(all(f[0] == i and f[1] < 1e-5 for f, i in zip(firsts, ids)),
          "k = 1 with each document's own vector returns that document at distance 0")

    question = "Which nearest neighbour search finds embeddings for retrieval augmented generation?"
    q = embed(question)
    qb = q.astype("<f4").tobytes()
    print("\n2. k-NN: %r" % question)
    hits = db.execute(knn + " ORDER BY distance", (qb, 3)).fetchall()
    for rowid, dist in hits:
        print("   %2d  %.4f  %s" % (rowid, dist, corpus[ids.index(rowid)]["title"]))
    same_answer(hits, brute_force(q, vecs, ids, 3), "the 3 nearest")
    check(hits[0][0] == 6, "the best match is 'Retrieval augmented generation'")
    check(all(corpus[ids.index(r)]["topic"] == "vectors" for r, _ in hits),
          "all 3 are about vector search")
    check(all(a[1] <= b[1] for a, b in zip(hits, hits[1:])), "sorted by distance")

    print("\n3. filtered k-NN: the same question, blog posts from 2022 on")
    fhits = db.execute(
        "SELECT rowid, distance, source, year FROM doc_index "
        "WHERE embedding MATCH ? AND k = 3 AND source = 'blog' AND year >= 2022 "
        "ORDER BY distance", (qb,)).fetchall()
    for rowid, dist, source, year in fhits:
        print("   %2d  %.4f  %-4s %d  %s" % (rowid, dist, source, year,
                                            corpus[ids.index(rowid)]["title"]))
    sel = [i for i, d in enumerate(corpus) if d["source"] == "blog" and d["year"] >= 2022]
    check(len(fhits) == 3, "k = 3 rows come back (%d documents match the filter)" % len(sel))
    check(all(s == "blog" and y >= 2022 for _, _, s, y in fhits), "every row matches the filter")
    same_answer([(r, d) for r, d, _, _ in fhits],
                brute_force(q, vecs[sel], [ids[i] for i in sel], 3), "the filtered 3")

    print("\n4. RAG context: join the hits back to documents for their text")
    rows = db.execute("""
        WITH hits AS MATERIALIZED (
          SELECT rowid AS id, distance, text FROM doc_index
           WHERE embedding MATCH :q AND k = :k AND year >= :since)
        SELECT d.id, d.title, d.source, d.year, h.distance, h.text = d.text
          FROM hits AS h JOIN documents AS d ON d.id = h.id
         ORDER BY h.distance, d.id""", {"q": qb, "k": 2, "since": 2019}).fetchall()
    context = []
    for rank, (i, title, source, year, dist, same) in enumerate(rows, 1):
        print("   [%d] %s (%s, %d), distance %.4f" % (rank, title, source, year, dist))
        context.append("[%d] %s: %s" % (rank, title, corpus[ids.index(i)]["text"]))
    check(len(rows) == 2 and all(r[5] for r in rows),
          "2 hits joined to documents; the auxiliary text equals the documents' text")
    same_answer([(r[0], r[4]) for r in rows],
                brute_force(q, vecs[[k for k, d in enumerate(corpus) if d["year"] >= 2019]],
                            [d["id"] for d in corpus if d["year"] >= 2019], 2),
                "the joined hits")
    print("   prompt for the model:\n     " + "\n     ".join(
        ["Answer from these sources."] + context + ["Question: " + question]))

    print("\n5. the table is consistent")
    db.execute("INSERT INTO doc_index(doc_index) VALUES ('integrity-check')")
    check(True, "integrity-check passed")
    db.close()

    if failures:
        print("\npython_rag.py: %d check(s) FAILED" % len(failures))
        return 1
    print("\npython_rag.py: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
