#!/usr/bin/env bash
# bench/hnsw_run.sh — the HNSW benchmark: annex through SQL against hnswlib,
# FAISS IndexHNSWFlat and vectorlite, same M and ef_construction, on one
# dataset per run; prints one markdown report (hnsw_report.py).
#
#   bench/hnsw_run.sh ../shared/data/fashion-mnist25k
#   bench/hnsw_run.sh ../shared/data/mnist10k
#   bench/hnsw_run.sh synth:1m128          # generated once, as bench/run.sh does
#   SYSTEMS="hnswlib faiss" bench/hnsw_run.sh ../shared/data/mnist10k
#   SYSTEMS=annex bench/hnsw_run.sh synth:1m128   # rerun annex; the report
#                                                 # reuses the peers' last logs
#
# Per system (each in its own process, one after the other):
#   hnswlib     bench/hnsw_hnswlib.cpp, compiled with g++ -O3 -march=native
#               against Debian's libhnswlib-dev headers;
#   faiss       bench/hnsw_peers.py --system faiss (Debian python3-faiss);
#   vectorlite  bench/hnsw_peers.py --system vectorlite (npm package, loaded
#               into /usr/bin/python3's sqlite3, the system SQLite);
#   annex       bench/hnsw_annex.c: "build" (INSERTs in one transaction, then
#               'rebuild') for each thread count, then "query" in a fresh
#               process (reopen, first query, ef sweep on one thread).
# Builds use each thread count in THREADS (vectorlite: always 1); queries are
# single-threaded, one at a time, --repeat passes (QPS = median).
#
# Environment:
#   ANNEX_BENCH_SCRATCH  scratch folder (default /tmp/annex-bench), shared with
#                        bench/run.sh: npm packages, tools, synthetic data
#   HNSW_OUT             this run's logs, ids, databases and report
#                        (default <scratch>/hnsw/<dataset>)
#   SYSTEMS              default "hnswlib faiss vectorlite annex"
#   THREADS              build thread counts (default "1 2"; "2" for synth:*)
#   EF                   ef sweep (default 10,16,24,32,40,48,64,96,128,192,256)
#   REPEAT               query passes per ef (default 3)
#   FIRST_EF             ef of the first query after reopening (default 64)
#   M, EFC               graph parameters (default 16, 200)
#   TIMEOUT              seconds per system process (default 3600)
#   ANNEX_BUILD_DIR      cmake build folder for annex.so and hnsw_annex
#                        (default <repo>/build)
#   ANNEX_SO, HNSW_ANNEX_BIN   use these files instead of building
#   ANNEX_VTAB_ARGS      replaces the CREATE arguments, e.g.
#                        "embedding float[784] distance=l2, index=flat";
#                        with ANNEX_EF=0 (no ef_search term) it checks the
#                        driver against the exact index
#   ANNEX_EF             annex's ef sweep (default $EF)
#   ANNEX_REBUILD        1 (default): also time INSERT INTO t(t) VALUES('rebuild')
#   ANNEX_SQL_INIT       SQL after every annex open (default none: default pragmas)
#   ANNEX_REV            the annex revision named in the report (default: the
#                        repository's HEAD; set it when ANNEX_SO is another build)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="${ANNEX_BENCH_SCRATCH:-/tmp/annex-bench}"
BUILD="${ANNEX_BUILD_DIR:-$ROOT/build}"
SYSTEMS="${SYSTEMS:-hnswlib faiss vectorlite annex}"
EF="${EF:-10,16,24,32,40,48,64,96,128,192,256}"
REPEAT="${REPEAT:-3}"
FIRST_EF="${FIRST_EF:-64}"
M="${M:-16}"
EFC="${EFC:-200}"
TIMEOUT="${TIMEOUT:-3600}"
PY=/usr/bin/python3            # Debian's: numpy, faiss, sqlite3 with extensions
VL_PKG="@1yefuwang1/vectorlite-linux-x64@0.2.0"
VL_SO="$SCRATCH/node_modules/@1yefuwang1/vectorlite-linux-x64/src/vectorlite.so"
DATA_TOOLS="$ROOT/../shared/data/tools"

[ $# -eq 1 ] || { echo "usage: bench/hnsw_run.sh DATASET_DIR|synth:PRESET" >&2; exit 2; }
DATASET="$1"

# ------------------------------------------------------------ data
# Same generator, arguments and path as bench/run.sh, so both share the files.
make_synth() {
  local preset="$1" dir="$SCRATCH/data/syn$1"
  if [ ! -f "$dir/groundtruth_dist.fvecs" ]; then
    mkdir -p "$SCRATCH/tools" "$dir"
    [ -x "$SCRATCH/tools/gen_synth" ] || \
      cc -O2 -ffp-contract=off -o "$SCRATCH/tools/gen_synth" "$DATA_TOOLS/gen_synth.c" -lm
    [ -x "$SCRATCH/tools/vecstool" ] || \
      cc -O2 -ffp-contract=off -o "$SCRATCH/tools/vecstool" "$DATA_TOOLS/vecstool.c" -lpthread -lm
    echo "generating $dir (gen_synth --preset $preset -s 1 -q 1000)" >&2
    "$SCRATCH/tools/gen_synth" --preset "$preset" -s 1 -q 1000 \
      -o "$dir/base.fvecs" -Q "$dir/query.fvecs" >&2
    echo "ground truth (vecstool gt, top-100 L2; minutes at 1M)" >&2
    "$SCRATCH/tools/vecstool" gt "$dir/base.fvecs" "$dir/query.fvecs" 100 l2 \
      "$dir/gt.tmp.ivecs" "$dir/gt.tmp.fvecs" >&2
    mv "$dir/gt.tmp.ivecs" "$dir/groundtruth.ivecs"
    mv "$dir/gt.tmp.fvecs" "$dir/groundtruth_dist.fvecs"
  fi
  DATA="$dir"
}

case "$DATASET" in
  synth:*) make_synth "${DATASET#synth:}"; NAME="syn${DATASET#synth:}"
           THREADS="${THREADS:-2}" ;;
  *) DATA="$(cd "$DATASET" && pwd)"; NAME="$(basename "$DATA")"
     THREADS="${THREADS:-1 2}" ;;
esac
for f in base.fvecs query.fvecs groundtruth.ivecs; do
  [ -f "$DATA/$f" ] || { echo "missing $DATA/$f" >&2; exit 1; }
done
OUT="${HNSW_OUT:-$SCRATCH/hnsw/$NAME}"
BIN="$SCRATCH/hnsw/bin"
mkdir -p "$OUT/ids" "$BIN"
THREADS_CSV="$(echo $THREADS | tr ' ' ',')"
DIM=$($PY -c "import numpy as np; print(int(np.fromfile('$DATA/query.fvecs', dtype='<i4', count=1)[0]))")

# ------------------------------------------------------------ per system
run_logged() {  # LOG CMD...: run under timeout, stdout to LOG (and the terminal)
  local log="$1"; shift
  echo "=== $NAME: $(basename "$log" .log) ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  timeout "$TIMEOUT" "$@" | tee "$log" \
    || echo "=== $(basename "$log" .log) failed (exit ${PIPESTATUS[0]}), see $log" >&2
}

run_hnswlib() {
  local exe="$BIN/hnsw_hnswlib" src="$ROOT/bench/hnsw_hnswlib.cpp"
  [ -d /usr/include/hnswlib ] || { echo "need Debian's libhnswlib-dev" >&2; return 1; }
  if [ ! -x "$exe" ] || [ "$src" -nt "$exe" ]; then
    g++ -O3 -march=native -std=c++17 -pthread -o "$exe" "$src"
  fi
  run_logged "$OUT/hnswlib.log" "$exe" --data "$DATA" --out "$OUT" \
    --threads "$THREADS_CSV" --ef "$EF" --m "$M" --efc "$EFC" \
    --repeat "$REPEAT" --first-ef "$FIRST_EF"
}

run_faiss() {
  run_logged "$OUT/faiss.log" "$PY" "$ROOT/bench/hnsw_peers.py" --system faiss \
    --data "$DATA" --out "$OUT" --threads "$THREADS_CSV" --ef "$EF" --m "$M" \
    --efc "$EFC" --repeat "$REPEAT" --first-ef "$FIRST_EF"
}

run_vectorlite() {
  if [ ! -f "$VL_SO" ]; then
    (cd "$SCRATCH" && { [ -f package.json ] || npm init -y >/dev/null; } \
       && npm install --no-audit --no-fund "$VL_PKG" >/dev/null)
  fi
  run_logged "$OUT/vectorlite.log" "$PY" "$ROOT/bench/hnsw_peers.py" \
    --system vectorlite --vectorlite-so "$VL_SO" --data "$DATA" --out "$OUT" \
    --ef "$EF" --m "$M" --efc "$EFC" --repeat "$REPEAT" --first-ef "$FIRST_EF"
}

run_annex() {
  if [ -z "${ANNEX_SO:-}" ] || [ -z "${HNSW_ANNEX_BIN:-}" ]; then
    [ -f "$BUILD/CMakeCache.txt" ] || \
      cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j2 --target annex hnsw_annex >/dev/null
  fi
  local so="${ANNEX_SO:-$BUILD/annex.so}" exe="${HNSW_ANNEX_BIN:-$BUILD/bench/hnsw_annex}"
  local db="$OUT/annex.db" t extra=()
  [ -z "${ANNEX_VTAB_ARGS:-}" ] || extra+=(--vtab-args "$ANNEX_VTAB_ARGS")
  [ -z "${ANNEX_SQL_INIT:-}" ] || extra+=(--sql-init "$ANNEX_SQL_INIT")
  [ "${ANNEX_REBUILD:-1}" = 1 ] && extra+=(--rebuild)
  rm -f "$OUT"/annex.*.log
  for t in $THREADS; do
    run_logged "$OUT/annex.build.t$t.log" "$exe" build --ext "$so" --data "$DATA" \
      --db "$db" --threads "$t" --m "$M" --efc "$EFC" "${extra[@]}"
  done
  extra=()
  [ -z "${ANNEX_SQL_INIT:-}" ] || extra+=(--sql-init "$ANNEX_SQL_INIT")
  run_logged "$OUT/annex.query.log" "$exe" query --ext "$so" --data "$DATA" \
    --db "$db" --out "$OUT" --ef "${ANNEX_EF:-$EF}" --repeat "$REPEAT" \
    --first-ef "$FIRST_EF" "${extra[@]}"
  rm -f "$db" "$db-journal" "$db-wal" "$db-shm"
}

for sys in $SYSTEMS; do
  case "$sys" in
    hnswlib) rm -f "$OUT"/ids/hnswlib.*; run_hnswlib ;;
    faiss) rm -f "$OUT"/ids/faiss.*; run_faiss ;;
    vectorlite) rm -f "$OUT"/ids/vectorlite.*; run_vectorlite ;;
    annex) rm -f "$OUT"/ids/annex.*; run_annex ;;
    *) echo "unknown system $sys (hnswlib faiss vectorlite annex)" >&2; exit 2 ;;
  esac
done

# ------------------------------------------------------------ report
{
  echo "# HNSW benchmark, $NAME (dim $DIM): M=$M, ef_construction=$EFC"
  echo
  echo "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date '+%F %T'),"
  echo "annex ${ANNEX_REV:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')}; build threads: $THREADS;"
  echo "queries one at a time on 1 thread, $REPEAT passes per ef. Logs: $OUT"
  echo
  "$PY" "$ROOT/bench/hnsw_report.py" --data "$DATA" --out "$OUT" --name "$NAME"
  echo
  for f in "$OUT"/*.log; do echo "log: $f ($(date -r "$f" '+%F %T'))"; done
} | tee "$OUT/report.md"
