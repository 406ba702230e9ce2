#!/usr/bin/env bash
# run.sh — run the client examples: python_rag.py (Python's sqlite3 + NumPy)
# and node_rag.mjs (Node + better-sqlite3). Non-interactive; exits non-zero
# when anything fails, or when the two clients disagree on an answer.
#
#   examples/run.sh
#
# Gets what is missing first:
#   annex.so       built with CMake into build/ (cmake --build is a no-op when
#                  it is up to date); or set ANNEX_SO to use another one
#   NumPy          python3-numpy from apt (as root; else it says what to run)
#   better-sqlite3 `npm ci` in examples/ (from package-lock.json, into
#                  examples/node_modules/, which git ignores). It compiles its
#                  native module from source against Node's headers: about a
#                  minute on 2 cores, the first time only.
# Needs Node 20 or newer (better-sqlite3 12 supports 20.x to 26.x).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=/usr/bin/python3   # Debian's: can load extensions (pyenv's often cannot)
t0=$SECONDS
fail() { echo "examples/run.sh: FAILED: $*" >&2; exit 1; }

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    fail "missing Debian packages; install them with: sudo apt-get install $*"
  fi
  echo "installing: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
}

# annex.so
if [ -z "${ANNEX_SO:-}" ]; then
  scripts/deps.sh build
  if [ ! -f build/CMakeCache.txt ]; then
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target annex >/dev/null \
    || fail "building annex.so (cmake --build build --target annex)"
  export ANNEX_SO=$root/build/annex.so
fi
[ -f "$ANNEX_SO" ] || fail "no annex.so at $ANNEX_SO"

# Python + NumPy
[ -x "$py" ] || apt_install python3
"$py" -c 'import numpy' 2>/dev/null || apt_install python3-numpy

# Node + better-sqlite3
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  fail "node and npm are needed (Node 20 or newer)"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "Node $(node --version) is too old; better-sqlite3 12 needs 20+"
if ! (cd examples && node -e "require('better-sqlite3')" 2>/dev/null); then
  echo "installing better-sqlite3 into examples/node_modules (npm ci)"
  if ! command -v make >/dev/null || ! command -v g++ >/dev/null; then
    apt_install make g++ python3   # node-gyp builds the native module
  fi
  (cd examples && npm ci --no-audit --no-fund --loglevel=error) \
    || fail "npm ci in examples/"
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/annex-examples.XXXXXX")
trap 'rm -rf "$out"' EXIT

echo "== python_rag.py"
s=$SECONDS
"$py" examples/python_rag.py | tee "$out/python.txt" || fail "python_rag.py"
echo "(python_rag.py: $((SECONDS - s))s)"

echo
echo "== node_rag.mjs"
s=$SECONDS
node examples/node_rag.mjs | tee "$out/node.txt" || fail "node_rag.mjs"
echo "(node_rag.mjs: $((SECONDS - s))s)"

# Same corpus, same embeddings, same SQL: the answers (rank lines with ids,
# distances, titles) must be identical.
answers() { grep -E '^ +([0-9]+ |\[[0-9]+\] )' "$1"; }
if ! diff <(answers "$out/python.txt") <(answers "$out/node.txt") >"$out/diff.txt"; then
  cat "$out/diff.txt"
  fail "python_rag.py and node_rag.mjs disagree"
fi
echo
echo "examples: both clients passed and agree on $(answers "$out/python.txt" | wc -l) answer lines ($((SECONDS - t0))s)"
