#!/usr/bin/env bash
# node/test.sh — annex replicated on dqlite (issue 9): builds annex-node,
# annex-dq and test_replicated into BUILD_DIR (default build/), then runs
#   1. test_replicated, twice: three annex-node processes on 127.0.0.1, an
#      index=hnsw table loaded with sift5k, SIGKILL (then SIGTERM) of the
#      leader, answers compared through the new leader, a write while the
#      old leader is down, the old leader restarted and checked through
#      itself;
#   2. a smoke test of annex-dq (the README's commands) on one node.
#
#   node/test.sh [BUILD_DIR]
#
# Installs libdqlite-dev with apt-get when it is missing (as root); when it
# cannot be installed the step is SKIPPED with a message saying why.
# ANNEX_DATA_DIR points at the shared datasets (default ../shared/data).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${1:-build}
data=${ANNEX_DATA_DIR:-$root/../shared/data}
skip() { echo "== replicated: SKIPPED, $*"; exit 0; }

if ! dpkg-query -W -f='${Status}' libdqlite-dev 2>/dev/null | grep -q "install ok installed"; then
  [ "$(id -u)" -eq 0 ] || skip "libdqlite-dev is missing and this is not root (sudo apt-get install libdqlite-dev)"
  echo "installing: libdqlite-dev"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq libdqlite-dev >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq libdqlite-dev >/dev/null; }; } \
    || skip "apt-get could not install libdqlite-dev"
fi
[ -f "$data/sift5k/base.fvecs" ] || { echo "node/test.sh: $data/sift5k is missing" >&2; exit 1; }

# Re-configure so node/ sees libdqlite, then build only what this needs.
cmake -S . -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" \
      --target annex_node annex_dq test_replicated >/dev/null
bin=$build/node
[ -x "$bin/annex-node" ] || { echo "node/test.sh: $bin/annex-node was not built" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/annex-replicated.XXXXXX")
pid=""
cleanup() { [ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true; }
trap cleanup EXIT

echo "-- test_replicated: the leader SIGKILLed (logs in $work)"
"$bin/test_replicated" --node "$bin/annex-node" --data "$data/sift5k" \
    --work "$work/kill" --queries 50 --k 10 --stop kill
echo "-- test_replicated: the leader stopped with SIGTERM"
"$bin/test_replicated" --node "$bin/annex-node" --data "$data/sift5k" \
    --work "$work/term" --queries 50 --k 10 --stop term

# annex-dq, as the README shows it, against a single node.
echo "-- annex-dq smoke test"
port=$(( 20000 + ($$ % 20000) ))
"$bin/annex-node" --id 1 --address "127.0.0.1:$port" --dir "$work/smoke" \
    2>"$work/smoke.log" &
pid=$!
for _ in $(seq 50); do
  "$bin/annex-dq" -s "127.0.0.1:$port" .leader >/dev/null 2>&1 && break
  sleep 0.1
done
out=$("$bin/annex-dq" -s "127.0.0.1:$port" \
  "CREATE VIRTUAL TABLE docs USING annex(embedding float[4], index=hnsw)" \
  "INSERT INTO docs(rowid, embedding) VALUES (1, '[1,0,0,0]'), (2, '[0,1,0,0]')" \
  "SELECT rowid, distance FROM docs WHERE embedding MATCH '[1,0,0,0.5]' AND k = 1")
[ "$out" = "1|0.5" ] || { echo "annex-dq: expected 1|0.5, got: $out"; exit 1; }
if "$bin/annex-dq" -s "127.0.0.1:$port" "DELETE FROM docs_chunks" 2>/dev/null; then
  echo "annex-dq: a direct write to a shadow table succeeded"; exit 1
fi
kill -TERM "$pid"; wait "$pid"; pid=""
echo "annex-dq: k-NN through the node ok, shadow-table write refused, node stopped cleanly"
rm -rf "$work"
echo "== replicated: passed"
