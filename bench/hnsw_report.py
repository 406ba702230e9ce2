#!/usr/bin/python3
"""hnsw_report.py — the table of the HNSW benchmark (bench/hnsw_run.sh).

  hnsw_report.py --data DIR --out DIR [--k 10] [--target 0.95] [--name NAME]

Reads every OUT/*.log (lines "BUILD|REOPEN|SEARCH key=value ..." written by
hnsw_hnswlib.cpp, hnsw_peers.py and hnsw_annex.c), computes recall@k of each
SEARCH line from its ids file against DIR's exact ground truth, and prints
markdown: the sweep (recall, QPS, latency per system and ef), the builds
(time, sizes, RSS next to the raw vector bytes, reopen), and a summary line
per system (best QPS at recall >= target and the ratio annex / system).

Recall@k is tie-robust (../shared/data/README.md): a returned id is a hit
when its true L2 distance, recomputed here in double from base.fvecs, is <=
the k-th ground-truth distance (x (1 + 1e-6): the file stores it rounded to
float32). Duplicates, -1 and out-of-range ids are never hits. Without
groundtruth_dist.fvecs it falls back to |returned & true top-k| / k, which
the "ids" column always shows.
"""
import argparse
import glob
import os

import numpy as np


def read_vecs(path, dtype, mmap=False):
    raw = np.memmap(path, dtype="<i4", mode="r") if mmap else np.fromfile(path, dtype="<i4")
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].view(dtype)


def parse_logs(out):
    rows = []
    for log in sorted(glob.glob(os.path.join(out, "*.log"))):
        with open(log) as f:
            for line in f:
                parts = line.split()
                if not parts or parts[0] not in ("BUILD", "REOPEN", "SEARCH"):
                    continue
                kv = {"tag": parts[0], "log": log}
                for p in parts[1:]:
                    if "=" in p:
                        key, val = p.split("=", 1)
                        kv[key] = val.strip('"')
                rows.append(kv)
    return rows


class Truth:
    def __init__(self, data, k):
        self.k = k
        self.base = read_vecs(os.path.join(data, "base.fvecs"), "<f4", mmap=True)
        self.q = read_vecs(os.path.join(data, "query.fvecs"), "<f4").astype(np.float64)
        self.gt = read_vecs(os.path.join(data, "groundtruth.ivecs"), "<i4")[:, :k]
        p = os.path.join(data, "groundtruth_dist.fvecs")
        self.kth = None
        if os.path.exists(p):
            self.kth = read_vecs(p, "<f4")[:, k - 1].astype(np.float64) * (1 + 1e-6)

    def recall(self, ids_path):
        nq, k, n = len(self.q), self.k, len(self.base)
        ids = np.fromfile(ids_path, dtype="<i4")
        if ids.size != nq * k:
            raise SystemExit(f"{ids_path}: {ids.size} ids, expected {nq} x {k}")
        ids = ids.reshape(nq, k)
        hits_tie = hits_ids = 0
        for i in range(nq):
            row = [int(x) for x in ids[i] if 0 <= x < n]
            row = list(dict.fromkeys(row))  # drop duplicates, keep order
            hits_ids += len(set(row) & set(self.gt[i].tolist()))
            if self.kth is not None and row:
                v = np.asarray(self.base[row], dtype=np.float64)
                dist = np.sqrt(((v - self.q[i]) ** 2).sum(axis=1))
                hits_tie += int((dist <= self.kth[i]).sum())
        r_ids = hits_ids / (nq * k)
        r_tie = hits_tie / (nq * k) if self.kth is not None else r_ids
        return r_tie, r_ids


def mb(x):
    return "%.1f" % (float(x) / 1e6) if x not in (None, "", "-1") else "-"


def fnum(x, fmt="%.1f"):
    try:
        return fmt % float(x)
    except (TypeError, ValueError):
        return "-"


def order(systems):
    pref = ["annex", "hnswlib", "faiss", "vectorlite"]
    return sorted(systems, key=lambda s: (pref.index(s) if s in pref else 99, s))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--name", default=None)
    a = p.parse_args()
    rows = parse_logs(a.out)
    truth = Truth(a.data, a.k)
    name = a.name or os.path.basename(os.path.normpath(a.data))
    n, d = truth.base.shape
    print(f"## {name}: n={n:,} dim={d} queries={len(truth.q)} k={a.k}, "
          f"raw vectors {n * d * 4 / 1e6:.1f} MB")
    print()

    searches = [r for r in rows if r["tag"] == "SEARCH"]
    for r in searches:
        r["recall"], r["recall_ids"] = truth.recall(r["ids"])
    systems = order({r["system"] for r in rows})

    print("### Search sweep (one query at a time, 1 thread; QPS = median of passes)")
    print()
    print("| system | ef | recall@10 | recall (ids) | QPS | QPS per pass | QPS (CPU) | p50 us | p99 us | note |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for s in systems:
        for r in sorted((r for r in searches if r["system"] == s), key=lambda r: int(r["ef"])):
            note = f"batch 1t {r['qps_batch']} QPS" if "qps_batch" in r else ""
            print(f"| {s} | {r['ef']} | {r['recall']:.4f} | {r['recall_ids']:.4f} | "
                  f"{fnum(r['qps'])} | {r.get('qps_passes', '')} | {fnum(r.get('qps_cpu'))} | "
                  f"{fnum(r['p50_us'])} | "
                  f"{fnum(r['p99_us'])} | {note} |")
    print()

    print("### Builds, sizes, reopen")
    print()
    print("| system | build | threads | build s | build CPU s | index/DB MB | raw MB | size / raw | "
          "RSS after build MB | peak RSS MB | reopen ms | first query ms | steady p50 us |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    raw = n * d * 4
    for s in systems:
        reopen = [r for r in rows if r["tag"] == "REOPEN" and r["system"] == s]
        ro = reopen[-1] if reopen else {}
        size = ro.get("index_bytes")
        steady = "-"
        if ro.get("first_ef"):
            m = [r for r in searches if r["system"] == s and r["ef"] == ro["first_ef"]]
            if m:
                steady = f"{fnum(m[-1]['p50_us'])} (ef {ro['first_ef']})"
        for r in (r for r in rows if r["tag"] == "BUILD" and r["system"] == s):
            sz = r.get("db_bytes", size)
            ratio = "%.2f" % (float(sz) / raw) if sz not in (None, "-1") else "-"
            print(f"| {s} | {r.get('phase', 'build')} | {r['threads']} | {fnum(r['build_s'], '%.2f')} | {fnum(r.get('cpu_s'), '%.2f')} | "
                  f"{mb(sz)} | {mb(raw)} | {ratio} | {mb(int(r['rss_kb']) * 1000)} | "
                  f"{mb(int(r['hwm_kb']) * 1000)} | {fnum(ro.get('open_ms'), '%.2f')} | "
                  f"{fnum(ro.get('first_query_ms'), '%.2f')} | {steady} |")
    print()

    print(f"### Summary: best QPS at recall@10 >= {a.target}")
    print()
    best = {}
    for s in systems:
        ok = [r for r in searches if r["system"] == s and r["recall"] >= a.target]
        if ok:
            best[s] = max(ok, key=lambda r: float(r["qps"]))
    for s in systems:
        if s not in best:
            print(f"- {s}: no ef reached recall@10 >= {a.target}")
            continue
        b = best[s]
        line = f"- {s}: {float(b['qps']):,.0f} QPS at ef={b['ef']} (recall {b['recall']:.4f})"
        if "annex" in best and s != "annex":
            line += f"; annex / {s} = {float(best['annex']['qps']) / float(b['qps']):.2f}"
        # The same point by CPU time (less sensitive to a loaded machine).
        okc = [r for r in searches if r["system"] == s and r["recall"] >= a.target and r.get("qps_cpu")]
        if okc:
            c = max(okc, key=lambda r: float(r["qps_cpu"]))
            line += f"; by CPU time {float(c['qps_cpu']):,.0f} QPS at ef={c['ef']}"
            ac = [r for r in searches if r["system"] == "annex" and r["recall"] >= a.target and r.get("qps_cpu")]
            if ac and s != "annex":
                bc = max(ac, key=lambda r: float(r["qps_cpu"]))
                line += f" (annex / {s} = {float(bc['qps_cpu']) / float(c['qps_cpu']):.2f})"
        print(line)
    builds = {}
    for r in rows:
        if r["tag"] == "BUILD":
            builds[(r["system"], r.get("phase", "build"), r["threads"])] = r
    for (s, ph, t), r in sorted(builds.items()):
        h = builds.get(("hnswlib", "build", t))
        if s != "annex" or h is None:
            continue
        v, hv = float(r["build_s"]), float(h["build_s"])
        line = (f"- build, {t} thread(s): annex {ph} {v:.1f} s / hnswlib {hv:.1f} s "
                f"= {v / hv:.2f}")
        if r.get("cpu_s") and h.get("cpu_s"):
            c, hc = float(r["cpu_s"]), float(h["cpu_s"])
            line += f"; CPU seconds {c:.1f} / {hc:.1f} = {c / hc:.2f}"
        print(line)


if __name__ == "__main__":
    main()
