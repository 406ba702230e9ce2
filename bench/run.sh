#!/usr/bin/env bash
# bench/run.sh — runs annex_bench for annex and for sqlite-vec on one dataset
# and prints a side-by-side table with the ratio annex / sqlite-vec.
#
#   bench/run.sh DATASET_DIR [annex_bench args...]   e.g. ../shared/data/fashion-mnist25k
#   bench/run.sh synth:1m128 [annex_bench args...]   generated once into the scratch folder
#
# What it does: builds annex.so and annex_bench (cmake, in $ANNEX_BUILD_DIR,
# default build/), installs sqlite-vec from npm into the scratch folder if
# missing, generates the synthetic set and its ground truth if asked and
# missing, runs each system in its own process on the same files, and prints
# the table. Nothing is written into the repository except the build folder.
#
# Environment:
#   ANNEX_BENCH_SCRATCH  scratch folder (default /tmp/annex-bench): npm
#                        package, tools, synthetic data, databases, logs
#   ANNEX_BUILD_DIR      cmake build folder (default <repo>/build)
#   ANNEX_SO, ANNEX_BENCH_BIN   use these files instead of building
#   SYSTEMS              systems to run (default "annex sqlite-vec")
#   MAX_SECONDS          --max-seconds per query pass (default 60)
#   ANNEX_ARGS, VEC_ARGS extra annex_bench args for one system only
#   RUN_TAG              names this variant's logs <dataset>.<tag>.<system>.log,
#                        e.g. RUN_TAG=mmap with --sql-init "PRAGMA mmap_size=..."
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="${ANNEX_BENCH_SCRATCH:-/tmp/annex-bench}"
BUILD="${ANNEX_BUILD_DIR:-$ROOT/build}"
SYSTEMS="${SYSTEMS:-annex sqlite-vec}"
MAX_SECONDS="${MAX_SECONDS:-60}"
VEC_PKG="sqlite-vec-linux-x64@0.1.9"
VEC_SO="$SCRATCH/node_modules/sqlite-vec-linux-x64/vec0.so"
DATA_TOOLS="$ROOT/../shared/data/tools"

usage() { echo "usage: bench/run.sh DATASET_DIR|synth:PRESET [annex_bench args...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
DATASET="$1"; shift
mkdir -p "$SCRATCH/db" "$SCRATCH/out"

# ------------------------------------------------------------ build
build_annex() {
  if [ -n "${ANNEX_SO:-}" ] && [ -n "${ANNEX_BENCH_BIN:-}" ]; then return; fi
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$BUILD" -j2 --target annex annex_bench >/dev/null
  ANNEX_SO="${ANNEX_SO:-$BUILD/annex.so}"
  ANNEX_BENCH_BIN="${ANNEX_BENCH_BIN:-$BUILD/bench/annex_bench}"
}

install_sqlite_vec() {
  [ -f "$VEC_SO" ] && return
  (cd "$SCRATCH" && { [ -f package.json ] || npm init -y >/dev/null; } \
     && npm install --no-audit --no-fund "$VEC_PKG" >/dev/null)
  [ -f "$VEC_SO" ] || { echo "npm install of $VEC_PKG did not produce $VEC_SO" >&2; exit 1; }
}

# ------------------------------------------------------------ data
build_data_tools() {
  mkdir -p "$SCRATCH/tools"
  [ -x "$SCRATCH/tools/gen_synth" ] || \
    cc -O2 -ffp-contract=off -o "$SCRATCH/tools/gen_synth" "$DATA_TOOLS/gen_synth.c" -lm
  [ -x "$SCRATCH/tools/vecstool" ] || \
    cc -O2 -ffp-contract=off -o "$SCRATCH/tools/vecstool" "$DATA_TOOLS/vecstool.c" -lpthread -lm
}

# synth:PRESET -> $SCRATCH/data/synPRESET with exact ground truth (cached)
make_synth() {
  local preset="$1" dir="$SCRATCH/data/syn$1"
  if [ ! -f "$dir/groundtruth_dist.fvecs" ]; then
    build_data_tools
    mkdir -p "$dir"
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

resolve_dataset() {
  case "$DATASET" in
    synth:*) make_synth "${DATASET#synth:}"; NAME="syn${DATASET#synth:}" ;;
    *) DATA="$(cd "$DATASET" && pwd)"; NAME="$(basename "$DATA")" ;;
  esac
  [ -z "${RUN_TAG:-}" ] || NAME="$NAME.$RUN_TAG"
  for f in base.fvecs query.fvecs groundtruth.ivecs; do
    [ -f "$DATA/$f" ] || { echo "missing $DATA/$f" >&2; exit 1; }
  done
  GT_DIST=()
  [ -f "$DATA/groundtruth_dist.fvecs" ] && GT_DIST=(--gt-dist "$DATA/groundtruth_dist.fvecs")
  return 0
}

# ------------------------------------------------------------ runs
run_system() {
  local sys="$1"; shift
  local so extra log="$SCRATCH/out/$NAME.$sys.log"
  if [ "$sys" = annex ]; then so="$ANNEX_SO"; extra="${ANNEX_ARGS:-}"
  else so="$VEC_SO"; extra="${VEC_ARGS:-}"; fi
  echo "=== $NAME: $sys ($(date +%T)) -> $log" >&2
  # shellcheck disable=SC2086  # extra holds several words on purpose
  "$ANNEX_BENCH_BIN" --system "$sys" --ext "$so" --base "$DATA/base.fvecs" \
    --query "$DATA/query.fvecs" --gt "$DATA/groundtruth.ivecs" "${GT_DIST[@]}" \
    --db "$SCRATCH/db/$sys.db" --max-seconds "$MAX_SECONDS" $extra "$@" | tee "$log" \
    || echo "=== $sys: annex_bench failed (exit ${PIPESTATUS[0]}), see $log" >&2
}

# Side-by-side table of the RESULT lines; ratio = annex / sqlite-vec. Uses the
# latest log of each system for this dataset (also one from an earlier run).
print_table() {
  local a="$SCRATCH/out/$NAME.annex.log" v="$SCRATCH/out/$NAME.sqlite-vec.log"
  echo
  echo "## $NAME — $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date +%F)"
  echo
  { grep -h '^RESULT ' "$a" 2>/dev/null | sed 's/^/1 /' || true
    grep -h '^RESULT ' "$v" 2>/dev/null | sed 's/^/2 /' || true
  } | awk -f <(table_awk)
  echo
  for f in "$a" "$v"; do
    [ -f "$f" ] && echo "log: $f ($(date -r "$f" '+%F %T'))"
  done
  return 0
}

table_awk() {
  cat <<'AWK'
    { for (i = 3; i <= NF; i++) { split($i, kv, "="); val[$1, kv[1]] = kv[2] } }
    function row(label, key, ratio,   x, y, r) {
      x = val[1, key]; y = val[2, key]; r = ""
      if (ratio && x != "" && y != "" && y + 0 != 0) r = sprintf("%.2f", x / y)
      if (x == "") x = "-"
      if (y == "") y = "-"
      printf("| %s | %s | %s | %s |\n", label, x, y, r)
    }
    END {
      print "| metric | annex | sqlite-vec | annex / sqlite-vec |"
      print "| --- | ---: | ---: | ---: |"
      row("version", "version", 0); row("n", "n", 0); row("dim", "dim", 0)
      row("k", "k", 0); row("queries timed in pass 1", "queries", 0)
      row("queries timed, all passes", "timed", 0)
      row("recall@k", "recall", 0); row("recall@k (ids only)", "recall_ids", 0)
      row("QPS (median of passes)", "qps", 1)
      row("latency p50 (us)", "p50_us", 1); row("latency p99 (us)", "p99_us", 1)
      row("insert (rows/s)", "insert_rows_s", 1); row("insert (s)", "insert_s", 1)
      row("batch (0 = one transaction)", "batch", 0)
      row("DB file (bytes)", "db_bytes", 1); row("peak RSS (kB)", "rss_kb", 1)
      row("reopen: open+load (ms)", "open_ms", 1)
      row("reopen: first query (ms)", "first_query_ms", 1)
      row("checks", "checks", 0)
    }
AWK
}

build_annex
case " $SYSTEMS " in *" sqlite-vec "*) install_sqlite_vec ;; esac
resolve_dataset
for sys in $SYSTEMS; do run_system "$sys" "$@"; done
print_table
