#!/usr/bin/python3
"""hnsw_peers.py — FAISS IndexHNSWFlat and vectorlite peers of the HNSW
benchmark (bench/hnsw_run.sh). Run with Debian's /usr/bin/python3 (numpy and
faiss from apt; its sqlite3 can load extensions).

  hnsw_peers.py --system faiss --data DIR --out DIR [--threads 1,2]
  hnsw_peers.py --system vectorlite --vectorlite-so SO --data DIR --out DIR
      [--m 16] [--efc 200] [--ef 10,16,...] [--k 10] [--repeat 3] [--first-ef 64]

Prints the same lines as hnsw_hnswlib.cpp ("TAG key=value ..."):
  BUILD   one per build: seconds, raw vector bytes, RSS after the build with
          the driver's own copy of the base vectors released (VmRSS) and the
          peak so far (VmHWM);
  REOPEN  the index written out and read back (FAISS: write_index /
          read_index; vectorlite: the connection closed, which saves its
          index file, and a new one opened), then one query at --first-ef;
  SEARCH  per ef: the query set --repeat times, one query per call on one
          thread, each timed alone; QPS = queries / summed latency, median
          of the passes. Ids of the first pass in OUT/ids/SYSTEM.efE.i32.

FAISS: efConstruction set before add; the add runs on --threads OpenMP
threads (all rows in one call); queries with faiss.omp_set_num_threads(1).
SEARCH also gives qps_batch: one search() call over all queries on 1 thread
(no Python per-call cost), for reference.
vectorlite: builds during INSERT (one thread, it has no thread knob); rows
inserted with executemany inside one BEGIN ... COMMIT, rowid = row + 1,
queried with knn_search(emb, knn_param(?, k, ef)).
"""
import argparse
import os
import sqlite3
import sys
import time

import numpy as np


def read_fvecs(path, mmap=False):
    raw = np.memmap(path, dtype="<i4", mode="r") if mmap else np.fromfile(path, dtype="<i4")
    d = int(raw[0])
    rows = raw.reshape(-1, d + 1)
    return rows[:, 1:].view("<f4"), d


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def ints(s):
    return [int(x) for x in s.split(",") if x]


def emit(tag, **kv):
    print(tag + " " + " ".join(f"{k}={v}" for k, v in kv.items()), flush=True)


def write_ids(out, system, ef, ids):
    path = os.path.join(out, "ids", f"{system}.ef{ef}.i32")
    np.ascontiguousarray(ids, dtype="<i4").tofile(path)
    return path


def sweep(a, system, qs, search_one, set_ef, extra=None):
    """search_one(i) -> k ids (0-based, -1 padded) of query i."""
    nq, k = len(qs), a.k
    for ef in a.ef:
        set_ef(ef)
        for w in range(5):
            search_one(w % nq)
        ids = np.full((nq, k), -1, dtype=np.int32)
        lat = np.empty((a.repeat, nq))
        qps, qps_cpu = [], []
        for p in range(a.repeat):
            clock = time.perf_counter
            c0 = time.thread_time()
            for i in range(nq):
                t0 = clock()
                r = search_one(i)
                lat[p, i] = clock() - t0
                if p == 0:
                    ids[i, :len(r)] = r[:k]
            qps.append(nq / lat[p].sum())
            qps_cpu.append(nq / (time.thread_time() - c0))
        flat = np.sort(lat.ravel()) * 1e6
        kv = dict(ef=ef, queries=nq, k=k, qps="%.1f" % float(np.median(qps)),
                  qps_passes=",".join("%.1f" % x for x in qps),
                  qps_cpu="%.1f" % float(np.median(qps_cpu)),
                  p50_us="%.1f" % flat[int(0.50 * (len(flat) - 1))],
                  p99_us="%.1f" % flat[int(0.99 * (len(flat) - 1))])
        if extra:
            kv.update(extra(ef))
        kv["ids"] = write_ids(a.out, system, ef, ids)
        emit("SEARCH", system=system, **kv)


# ------------------------------------------------------------------ FAISS
def run_faiss(a):
    import faiss
    qs, d = read_fvecs(os.path.join(a.data, "query.fvecs"))
    qs = np.ascontiguousarray(qs)
    index = None
    for t in a.threads:
        base, _ = read_fvecs(os.path.join(a.data, "base.fvecs"))
        base = np.ascontiguousarray(base)
        n = len(base)
        index = None
        faiss.omp_set_num_threads(t)
        t0, c0 = time.perf_counter(), time.process_time()
        index = faiss.IndexHNSWFlat(d, a.m)
        index.hnsw.efConstruction = a.efc
        index.add(base)
        build_s, cpu = time.perf_counter() - t0, time.process_time() - c0
        del base
        emit("BUILD", system="faiss", threads=t, n=n, dim=d, m=a.m, efc=a.efc,
             build_s="%.3f" % build_s, cpu_s="%.3f" % cpu, raw_bytes=n * d * 4,
             rss_kb=status_kb("VmRSS"), hwm_kb=status_kb("VmHWM"))
    faiss.omp_set_num_threads(1)
    path = os.path.join(a.out, "faiss.index")
    faiss.write_index(index, path)
    del index
    nbytes = os.path.getsize(path)
    t0 = time.perf_counter()
    index = faiss.read_index(path)
    t1 = time.perf_counter()
    index.hnsw.efSearch = a.first_ef
    index.search(qs[0:1], a.k)
    t2 = time.perf_counter()
    os.unlink(path)
    emit("REOPEN", system="faiss", index_bytes=nbytes, open_ms="%.3f" % (1e3 * (t1 - t0)),
         first_query_ms="%.3f" % (1e3 * (t2 - t1)), first_ef=a.first_ef)
    k = a.k

    def one(i):
        return index.search(qs[i:i + 1], k)[1][0]

    def set_ef(ef):
        index.hnsw.efSearch = ef

    def batch(ef):
        t0 = time.perf_counter()
        index.search(qs, k)
        return {"qps_batch": "%.1f" % (len(qs) / (time.perf_counter() - t0))}

    sweep(a, "faiss", qs, one, set_ef, batch)


# ------------------------------------------------------------------ vectorlite
def vl_connect(so, db):
    c = sqlite3.connect(db, isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(so)
    return c


def run_vectorlite(a):
    if a.threads != [1]:
        print("vectorlite builds on one thread; --threads ignored", file=sys.stderr)
    qs, d = read_fvecs(os.path.join(a.data, "query.fvecs"))
    qs = np.ascontiguousarray(qs)
    db = os.path.join(a.out, "vectorlite.db")
    idx = os.path.join(a.out, "vectorlite.hnsw")
    for f in (db, db + "-journal", idx):
        if os.path.exists(f):
            os.unlink(f)
    base, _ = read_fvecs(os.path.join(a.data, "base.fvecs"), mmap=True)
    n = len(base)
    c = vl_connect(a.vectorlite_so, db)
    version = c.execute("select vectorlite_info()").fetchone()[0]
    c.execute(f"create virtual table t using vectorlite(emb float32[{d}] l2, "
              f"hnsw(max_elements={n}, ef_construction={a.efc}, M={a.m}), '{idx}')")
    t0, c0 = time.perf_counter(), time.process_time()
    c.execute("BEGIN")
    step = 10000
    for s in range(0, n, step):
        blk = np.ascontiguousarray(base[s:s + step])
        c.executemany("insert into t(rowid, emb) values (?, ?)",
                      ((s + i + 1, blk[i].tobytes()) for i in range(len(blk))))
    c.execute("COMMIT")
    build_s, cpu = time.perf_counter() - t0, time.process_time() - c0
    del base, blk
    emit("BUILD", system="vectorlite", threads=1, n=n, dim=d, m=a.m, efc=a.efc,
         build_s="%.3f" % build_s, cpu_s="%.3f" % cpu, raw_bytes=n * d * 4,
         rss_kb=status_kb("VmRSS"), hwm_kb=status_kb("VmHWM"),
         version='"%s"' % version.replace(" ", "_"))
    c.close()  # saves the index file
    nbytes = os.path.getsize(db) + os.path.getsize(idx)
    sql = "select rowid, distance from t where knn_search(emb, knn_param(?, ?, ?))"
    t0 = time.perf_counter()
    c = vl_connect(a.vectorlite_so, db)
    t1 = time.perf_counter()
    c.execute(sql, (qs[0].tobytes(), a.k, a.first_ef)).fetchall()
    t2 = time.perf_counter()
    emit("REOPEN", system="vectorlite", index_bytes=nbytes, open_ms="%.3f" % (1e3 * (t1 - t0)),
         first_query_ms="%.3f" % (1e3 * (t2 - t1)), first_ef=a.first_ef)
    blobs = [q.tobytes() for q in qs]
    k = a.k
    cur = c.cursor()
    state = {"ef": a.first_ef}

    def one(i):
        rows = cur.execute(sql, (blobs[i], k, state["ef"])).fetchall()
        rows.sort(key=lambda r: r[1])
        return [r[0] - 1 for r in rows]

    def set_ef(ef):
        state["ef"] = ef

    sweep(a, "vectorlite", qs, one, set_ef)
    c.close()
    for f in (db, db + "-journal", idx):
        if os.path.exists(f):
            os.unlink(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--system", required=True, choices=["faiss", "vectorlite"])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=ints, default=[1])
    p.add_argument("--ef", type=ints, default=ints("10,16,24,32,40,48,64,96,128,192,256"))
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--efc", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--first-ef", type=int, default=64)
    p.add_argument("--vectorlite-so")
    a = p.parse_args()
    os.makedirs(os.path.join(a.out, "ids"), exist_ok=True)
    if a.system == "faiss":
        run_faiss(a)
    else:
        if not a.vectorlite_so:
            p.error("--vectorlite-so is required for vectorlite")
        run_vectorlite(a)


if __name__ == "__main__":
    main()
