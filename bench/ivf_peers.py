#!/usr/bin/python3
"""ivf_peers.py — annex index=ivf through SQL against FAISS IVF, one run.

Measures, on one dataset and in one process (same noisy machine, one
thread, one query at a time):

  * IVF-Flat: annex ivf(quantizer=flat) vs FAISS IndexIVFFlat, same nlist,
    an nprobe sweep; recall@10 (tie-robust, against the dataset's exact
    ground truth) and QPS; the QPS ratio at the smallest nprobe where each
    reaches recall@10 >= 0.95;
  * IVF-SQ8: annex ivf(quantizer=sq8) vs IndexIVFScalarQuantizer(QT_8bit);
  * IVF-PQ + re-rank: annex ivf(quantizer=pq, m, rerank) vs IndexIVFPQ
    wrapped in IndexRefineFlat (k_factor = rerank); index bytes (centroids
    + codes) against the raw vectors;
  * k-means: bench/ivf_kmeans.c (compiled here against ext/index) vs
    faiss.Kmeans with the same k, iterations and sample cap.

Usage (Debian's /usr/bin/python3: numpy and faiss from apt):
  bench/ivf_peers.py DATASET_DIR --annex build/annex.so [--nlist 0]
      [--queries 200] [--repeat 3] [--m 0] [--rerank 4] [--skip pq,sq8]
      [--build-threads 1] [--probes 1,2,4,...] [--vec1]
nlist 0 = annex's default, round(4 sqrt(n)). The annex databases are
built in --db-dir (default /tmp) and reused when present. Training and
assignment (annex's at the loading COMMIT, FAISS's train + add, and the
k-means section) run on --build-threads threads (annex_threads, OpenBLAS,
FAISS's OpenMP); every query runs on one thread. FAISS's IVF-PQ reuses the
coarse quantizer its IVF-Flat trained when that section ran (same k-means).
--vec1 prints the IVF-PQ rows against SQLite vec1's figures on 1M x 128
(../shared/peers/README.md).
"""
import argparse
import os
import sys

AP = argparse.ArgumentParser(description=__doc__.split("\n")[0])
AP.add_argument("dataset")
AP.add_argument("--annex", required=True, help="path of annex.so")
AP.add_argument("--nlist", type=int, default=0)
AP.add_argument("--queries", type=int, default=200)
AP.add_argument("--repeat", type=int, default=3)
AP.add_argument("--m", type=int, default=0, help="pq sub-quantizers")
AP.add_argument("--rerank", type=int, default=4)
AP.add_argument("--iters", type=int, default=10, help="k-means iterations")
AP.add_argument("--skip", default="",
                help="comma list: flat,sq8,pq,kmeans,faiss-pq (FAISS's "
                "IVF-PQ peer only)")
AP.add_argument("--db-dir", default="/tmp")
AP.add_argument("--build-threads", type=int, default=1,
                help="threads for training and assignment (queries: 1)")
AP.add_argument("--probes", default="1,2,4,8,12,16,24,32,48,64,96,128",
                help="comma list of nprobe values")
AP.add_argument("--vec1", action="store_true",
                help="compare IVF-PQ with vec1's 1M x 128 figures")
ARGS = AP.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(max(1, ARGS.build_threads))
os.environ["OMP_NUM_THREADS"] = "1"

import math  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import ctypes  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

faiss.omp_set_num_threads(1)
try:  # the one OpenBLAS that FAISS links and annex dlopens
    OPENBLAS = ctypes.CDLL("libopenblas.so.0")
except OSError:
    OPENBLAS = None


def set_threads(n, db=None):
    """Threads of FAISS's OpenMP, OpenBLAS and (through db) annex."""
    faiss.omp_set_num_threads(n)
    if OPENBLAS is not None:
        OPENBLAS.openblas_set_num_threads(n)
    if db is not None:
        db.execute("SELECT annex_threads(?)", (n,)).fetchall()
HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = set(s for s in ARGS.skip.split(",") if s)


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].view(dtype).copy()


BASE = read_vecs(os.path.join(ARGS.dataset, "base.fvecs"), np.float32)
QUERY = read_vecs(os.path.join(ARGS.dataset, "query.fvecs"), np.float32)
QUERY = QUERY[:ARGS.queries]
GTD = read_vecs(os.path.join(ARGS.dataset, "groundtruth_dist.fvecs"),
                np.float32)
N, D = BASE.shape
NLIST = ARGS.nlist or max(1, int(round(4 * math.sqrt(N))))
M = ARGS.m
if M == 0:  # annex's default would be dims/4; bench a 1/32 code
    M = max(x for x in range(1, D // 8 + 1) if D % x == 0)
PROBES = [int(x) for x in ARGS.probes.split(",") if x]


def recall(ids):
    """Tie-robust recall@10 of ids (rows of base row numbers)."""
    hit = 0
    for q, row in enumerate(ids):
        kth = GTD[q, 9]
        for r in row[:10]:
            if r < 0:
                continue
            d = float(np.linalg.norm(BASE[r] - QUERY[q]))
            hit += d <= kth * (1 + 1e-6) + 1e-6
    return hit / (10.0 * len(ids))


def timed(fn):
    """Median seconds of fn() over --repeat runs, and its last result."""
    times, out = [], None
    for _ in range(ARGS.repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def annex_db(kind, params):
    path = os.path.join(ARGS.db_dir, "annex-ivf-%s-%s-%d.db" % (
        os.path.basename(os.path.normpath(ARGS.dataset)), kind, NLIST))
    fresh = not os.path.exists(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(ARGS.annex)
    db.execute("PRAGMA mmap_size=1073741824")
    t_load = t_train = 0.0
    if fresh:
        db.execute("CREATE VIRTUAL TABLE t USING annex(v float[%d], "
                   "index=ivf(nlist=%d, %s))" % (D, NLIST, params))
        set_threads(ARGS.build_threads, db)
        t = time.perf_counter()
        db.execute("BEGIN")
        # 39 x nlist rows or more: training runs at this commit.
        db.executemany("INSERT INTO t(rowid, v) VALUES(?, ?)",
                       ((i + 1, BASE[i].tobytes()) for i in range(N)))
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        db.execute("COMMIT")
        t_train = time.perf_counter() - t
    set_threads(1, db)
    db.execute("SELECT rowid FROM t LIMIT 1").fetchall()  # connect t
    info = dict(db.execute("SELECT key, value FROM annex_info('t')"))
    assert info["ivf_state"] == "trained", info["ivf_state"]
    return db, info, t_load, t_train


def annex_sweep(db):
    sql = "SELECT rowid FROM t WHERE v MATCH ?1 AND k = 10 AND nprobe = ?2"
    qb = [q.tobytes() for q in QUERY]
    rows = []
    for p in PROBES:
        if p > NLIST:
            break
        def run():
            return [[r[0] - 1 for r in db.execute(sql, (b, p))] for b in qb]
        run()  # warm: lists load into the cache
        sec, ids = timed(run)
        rows.append((p, recall(ids), len(qb) / sec))
    return rows


def faiss_sweep(index, ivf=None):
    ivf = ivf or faiss.extract_index_ivf(index)
    rows = []
    for p in PROBES:
        if p > NLIST:
            break
        ivf.nprobe = p
        def run():
            return [index.search(QUERY[i:i + 1], 10)[1][0]
                    for i in range(len(QUERY))]
        sec, ids = timed(run)
        rows.append((p, recall(ids), len(QUERY) / sec))
    return rows


def at_095(rows):
    for p, r, qps in rows:
        if r >= 0.95:
            return p, r, qps
    return None


def report(name, ra, rf):
    print("\n## %s, nlist=%d (%s: n=%d, d=%d), %d queries, 1 thread" % (
        name, NLIST, os.path.basename(os.path.normpath(ARGS.dataset)), N, D,
        len(QUERY)))
    print("| nprobe | annex recall@10 | annex QPS | FAISS recall@10 | "
          "FAISS QPS |")
    print("|---|---|---|---|---|")
    for i, a in enumerate(ra):
        f = rf[i] if i < len(rf) else None
        print("| %d | %.4f | %.0f | %s | %s |" % (
            a[0], a[1], a[2], "%.4f" % f[1] if f else "-",
            "%.0f" % f[2] if f else "-"))
    a, f = at_095(ra), at_095(rf)
    if a and f:
        print("at recall@10 >= 0.95: annex nprobe=%d %.0f QPS, FAISS "
              "nprobe=%d %.0f QPS: ratio %.2fx" % (a[0], a[2], f[0], f[2],
                                                  a[2] / f[2]))
    sys.stdout.flush()


def train_faiss(index):
    set_threads(ARGS.build_threads)
    t = time.perf_counter()
    index.train(BASE)
    index.add(BASE)
    sec = time.perf_counter() - t
    set_threads(1)
    return sec


def at_recall(rows, target):
    for p, r, qps in rows:
        if r >= target:
            return p, r, qps
    return None


def quantizer(metric_l2=True):
    return faiss.IndexFlatL2(D)


def main():
    print("# ivf_peers: %s, annex %s, faiss %s; build threads %d, query "
          "threads 1" % (ARGS.dataset, ARGS.annex, faiss.__version__,
                         ARGS.build_threads))
    flat_q = None
    if "flat" not in SKIP:
        db, info, tl, tt = annex_db("flat", "quantizer=flat")
        ra = annex_sweep(db)
        q = quantizer()
        fi = faiss.IndexIVFFlat(q, D, NLIST)
        fi.cp.niter = ARGS.iters
        tf = train_faiss(fi)
        flat_q = q
        report("IVF-Flat (annex load %.1fs, train+assign %.1fs; FAISS "
               "train+add %.1fs)" % (tl, tt, tf), ra, faiss_sweep(fi))
        del db, fi
    if "sq8" not in SKIP:
        db, info, tl, tt = annex_db("sq8", "quantizer=sq8, rerank=2")
        ra = annex_sweep(db)
        q = quantizer()
        fi = faiss.IndexIVFScalarQuantizer(q, D, NLIST,
                                           faiss.ScalarQuantizer.QT_8bit)
        fi.cp.niter = ARGS.iters
        tf = train_faiss(fi)
        report("IVF-SQ8, annex rerank=2 (FAISS without refine)", ra,
               faiss_sweep(fi))
    if "pq" not in SKIP:
        db, info, tl, tt = annex_db(
            "pq%d" % M, "quantizer=pq, m=%d, rerank=%d" % (M, ARGS.rerank))
        ra = annex_sweep(db)
        mem = dict(db.execute("SELECT key, value FROM annex_info('t')"))
        code = NLIST * D * 4 + N * M
        if "faiss-pq" in SKIP:
            report("IVF-PQ m=%d + rerank %d (index bytes %d = %.4f of raw "
                   "%d; annex load %.1fs, train+assign %.1fs, memory_index "
                   "%s after the sweep; FAISS not run)" % (
                       M, ARGS.rerank, code, code / (N * D * 4.0), N * D * 4,
                       tl, tt, mem.get("memory_index")), ra, [])
        else:
            q = flat_q or quantizer()
            ivfpq = faiss.IndexIVFPQ(q, D, NLIST, M, 8)
            ivfpq.cp.niter = ARGS.iters
            fi = faiss.IndexRefineFlat(ivfpq)
            fi.k_factor = ARGS.rerank
            tf = train_faiss(fi)
            report("IVF-PQ m=%d + rerank %d (index bytes %d = %.4f of raw %d; "
                   "annex load %.1fs, train+assign %.1fs, memory_index %s after "
                   "the sweep; FAISS %s %.1fs)" % (
                       M, ARGS.rerank, code, code / (N * D * 4.0), N * D * 4,
                       tl, tt, mem.get("memory_index"),
                       "PQ train + add (coarse quantizer of IVF-Flat)"
                       if flat_q else "train + add", tf), ra,
                   faiss_sweep(fi, ivfpq))
        if ARGS.vec1:
            # ../shared/peers/README.md: IVF2048-PQ32, 1M x 128 clustered,
            # one query thread (with PRAGMA mmap_size in brackets)
            for rv, qv, qm in ((0.965, 1178, 1762), (0.995, 582, 831)):
                a = at_recall(ra, rv)
                if a:
                    print("vec1 %.0f QPS (%.0f with mmap) at recall %.3f; "
                          "annex nprobe=%d recall %.4f %.0f QPS: %.2fx "
                          "(%.2fx of mmap)" % (qv, qm, rv, a[0], a[1], a[2],
                                               a[2] / qv, a[2] / qm))
                else:
                    print("vec1 %.0f QPS at recall %.3f; annex does not "
                          "reach it in this sweep" % (qv, rv))
    if "kmeans" not in SKIP:
        exe = os.path.join(ARGS.db_dir, "ivf_kmeans_bench")
        root = os.path.dirname(HERE)
        idx = os.path.join(root, "ext", "index")
        src = [os.path.join(HERE, "ivf_kmeans.c")] + [
            os.path.join(idx, f) for f in ("kmeans.c", "distance.c",
                                           "alloc.c", "blas.c")]
        cc = ["gcc", "-std=c11", "-O3", "-fopenmp", "-DANNEX_HAVE_OPENMP",
              "-I" + os.path.join(root, "ext")]
        objs = []
        for f, flags in (("distance_avx2.c", ["-mavx2", "-mfma"]),
                         ("distance_avx512.c", ["-mavx512f", "-mavx512bw",
                                                "-mavx512vl", "-mfma"])):
            objs.append(exe + "-" + f + ".o")
            subprocess.check_call(cc + flags + ["-c", os.path.join(idx, f),
                                                "-o", objs[-1]])
        subprocess.check_call(cc + ["-o", exe] + src + objs + ["-lm", "-ldl"])
        bt = max(1, ARGS.build_threads)
        out = subprocess.check_output(
            [exe, os.path.join(ARGS.dataset, "base.fvecs"), str(NLIST),
             str(ARGS.iters), "256", str(bt), str(ARGS.repeat)],
            env=dict(os.environ, OPENBLAS_NUM_THREADS=str(bt))).decode()
        ta = statistics.median(float(l.split()[1]) for l in out.splitlines())
        tf = []
        set_threads(bt)
        for _ in range(ARGS.repeat):
            km = faiss.Kmeans(D, NLIST, niter=ARGS.iters, seed=1234,
                              max_points_per_centroid=256, verbose=False)
            t = time.perf_counter()
            km.train(BASE)
            tf.append(time.perf_counter() - t)
        set_threads(1)
        print("\n## k-means k=%d, %d iterations, <= 256 points per "
              "centroid, %d thread(s): annex %.2fs, FAISS %.2fs: ratio %.2fx"
              % (NLIST, ARGS.iters, bt, ta, statistics.median(tf),
                 ta / statistics.median(tf)))


main()
