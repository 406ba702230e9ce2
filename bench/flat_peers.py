#!/usr/bin/python3
"""flat_peers.py — annex's exact search against FAISS IndexFlatL2, one run.

Measures, on one dataset and in one process so that every ratio comes from
the same run on the same (shared, noisy) machine:

  * memory bandwidth: a large numpy copy (bytes read + written per second,
    and bytes read per second), the floor of any exact scan;
  * single-query exact k-NN, one query at a time on one thread:
    annex through SQL (PRAGMA mmap_size set, as recommended) and FAISS
    IndexFlatL2.search with one query; annex's scan rate in GB/s of vector
    data next to the measured bandwidth;
  * batch exact k-NN of Q queries: annex_knn('t', :queries, k) against
    IndexFlatL2.search on the same queries, with the same thread count
    (OPENBLAS_NUM_THREADS / OMP threads set before anything loads);
  * recall@k of both against the dataset's ground truth.

Usage (Debian's /usr/bin/python3: it has numpy and faiss from apt):
  bench/flat_peers.py DATASET_DIR [--annex build/annex.so] [--threads 2]
                      [--single 100] [--batch 1000] [--k 10] [--repeat 3]
DATASET_DIR holds base.fvecs, query.fvecs and groundtruth.ivecs. The annex
database is built in a scratch file (--db, default /tmp/annex-flat-peers.db)
and reused when it already holds the same base.
"""
import argparse
import os
import sys


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--annex", default=None, help="path of annex.so")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--single", type=int, default=100,
                    help="queries timed one at a time")
    ap.add_argument("--batch", type=int, default=1000,
                    help="queries in the batch")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", default="/tmp/annex-flat-peers.db")
    return ap.parse_args()


ARGS = parse_args()
# Thread counts must be fixed before numpy, faiss or OpenBLAS load.
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ.pop("OPENBLAS_CORETYPE", None)  # see ../shared: slows numpy only

import sqlite3  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:].view(dtype).copy()


def median_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def bandwidth():
    a = np.ones(64 << 20, dtype=np.float32)  # 256 MiB
    b = np.empty_like(a)
    dt, _ = median_of(lambda: np.copyto(b, a), 5)
    copy = 2 * a.nbytes / dt
    dt, _ = median_of(lambda: a.sum(), 5)
    return copy, a.nbytes / dt


def open_annex(base):
    so = ARGS.annex or os.path.join(os.path.dirname(__file__), "..", "build",
                                    "annex.so")
    fresh = not os.path.exists(ARGS.db)
    con = sqlite3.connect(ARGS.db)
    con.enable_load_extension(True)
    con.load_extension(os.path.splitext(so)[0])
    con.execute("PRAGMA mmap_size = %d" % (1 << 40))
    if not fresh:
        n = con.execute("SELECT value FROM annex_info('t') WHERE key='rows'")
        row = n.fetchone()
        if row is None or row[0] != len(base):
            con.close()
            os.remove(ARGS.db)
            return open_annex(base)
        return con
    con.execute("CREATE VIRTUAL TABLE t USING annex(v float[%d])"
                % base.shape[1])
    con.execute("BEGIN")
    con.executemany("INSERT INTO t(rowid, v) VALUES (?, ?)",
                    ((i, base[i].tobytes()) for i in range(len(base))))
    con.execute("COMMIT")
    return con


def recall(ids, gt, k):
    hits = sum(len(set(ids[i][:k]) & set(gt[i][:k])) for i in range(len(ids)))
    return hits / (len(ids) * k)


def single_annex(con, queries, k):
    out = []
    sql = "SELECT rowid FROM t WHERE v MATCH ? AND k = ?"
    for q in queries:
        out.append([r[0] for r in con.execute(sql, (q.tobytes(), k))])
    return out


def batch_annex(con, queries, k):
    rows = con.execute("SELECT query, rowid FROM annex_knn('t', ?, ?)",
                       (queries.tobytes(), k)).fetchall()
    out = [[] for _ in range(len(queries))]
    for qi, rid in rows:
        out[qi].append(rid)
    return out


def main():
    base = read_vecs(os.path.join(ARGS.dataset, "base.fvecs"), np.float32)
    query = read_vecs(os.path.join(ARGS.dataset, "query.fvecs"), np.float32)
    gt = read_vecs(os.path.join(ARGS.dataset, "groundtruth.ivecs"), np.int32)
    k, nb = ARGS.k, min(ARGS.batch, len(query))
    single_q = query[:ARGS.single]
    batch_q = np.ascontiguousarray(query[:nb])
    copy_bw, read_bw = bandwidth()
    print("dataset %s: n=%d dim=%d; threads=%d; k=%d" %
          (ARGS.dataset, len(base), base.shape[1], ARGS.threads, k))
    print("memory bandwidth: copy %.2f GB/s (read+write), read %.2f GB/s"
          % (copy_bw / 1e9, read_bw / 1e9))

    con = open_annex(base)
    con.execute("SELECT annex_threads(1)")
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    scan_bytes = base.nbytes

    # Single queries, one thread each.
    faiss.omp_set_num_threads(1)
    single_annex(con, single_q[:3], k)  # warm the page cache and mmap
    t_a, _ = median_of(lambda: single_annex(con, single_q, k), ARGS.repeat)
    t_f, _ = median_of(lambda: [index.search(q[None, :], k)
                                for q in single_q], ARGS.repeat)
    ids_a = single_annex(con, single_q, k)
    ids_f = [index.search(q[None, :], k)[1][0].tolist() for q in single_q]
    qps_a, qps_f = len(single_q) / t_a, len(single_q) / t_f
    gbs = scan_bytes * qps_a / 1e9
    print("\nsingle query, 1 thread, %d queries, median of %d passes"
          % (len(single_q), ARGS.repeat))
    print("  annex  %8.2f QPS  recall %.4f  scan %.2f GB/s = %.0f%% of read "
          "bandwidth, %.0f%% of copy bandwidth"
          % (qps_a, recall(ids_a, gt, k), gbs, 100 * gbs * 1e9 / read_bw,
             100 * gbs * 1e9 / copy_bw))
    print("  faiss  %8.2f QPS  recall %.4f" % (qps_f, recall(ids_f, gt, k)))
    print("  annex / faiss = %.2f" % (qps_a / qps_f))

    # The same single queries with annex's parallel scan.
    con.execute("SELECT annex_threads(%d)" % ARGS.threads)
    t_p, _ = median_of(lambda: single_annex(con, single_q, k), ARGS.repeat)
    qps_p = len(single_q) / t_p
    print("  annex with annex_threads(%d): %.2f QPS, scan %.2f GB/s, "
          "speed-up %.2f over 1 thread" % (ARGS.threads, qps_p,
                                          scan_bytes * qps_p / 1e9,
                                          qps_p / qps_a))

    # Batch.
    faiss.omp_set_num_threads(ARGS.threads)
    con.execute("SELECT annex_threads(%d)" % ARGS.threads)
    t_a, _ = median_of(lambda: batch_annex(con, batch_q, k), ARGS.repeat)
    t_f, _ = median_of(lambda: index.search(batch_q, k), ARGS.repeat)
    ids_a = batch_annex(con, batch_q, k)
    ids_f = index.search(batch_q, k)[1].tolist()
    qps_a, qps_f = nb / t_a, nb / t_f
    flops = 2.0 * nb * len(base) * base.shape[1]
    print("\nbatch of %d queries, %d threads, median of %d passes"
          % (nb, ARGS.threads, ARGS.repeat))
    print("  annex_knn         %8.1f QPS  recall %.4f  %.1f GFLOP/s"
          % (qps_a, recall(ids_a, gt, k), flops / t_a / 1e9))
    print("  faiss FlatL2      %8.1f QPS  recall %.4f  %.1f GFLOP/s"
          % (qps_f, recall(ids_f, gt, k), flops / t_f / 1e9))
    print("  annex / faiss = %.2f" % (qps_a / qps_f))


if __name__ == "__main__":
    sys.exit(main())
