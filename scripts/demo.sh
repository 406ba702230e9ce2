#!/usr/bin/env bash
# demo.sh — build annex and run the demo (scripts/demo.sql) in the stock
# sqlite3 shell: generated documents, exact k-NN with distances and timing,
# filters, a radius query, a rolled-back delete and an integrity check.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/deps.sh demo
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target annex -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
db=${ANNEX_DEMO_DB:-build/demo.db}
rm -f "$db"
sqlite3 "$db" < scripts/demo.sql
echo
echo "demo database left at $db; explore it with:"
echo "  sqlite3 $db -cmd '.load ./build/annex'"
