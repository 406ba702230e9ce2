#!/usr/bin/env bash
# install-check.sh — check that `cmake --install` gives applications what
# they need. Exits non-zero on any failure. Run from anywhere.
#
#   examples/install-check.sh
#
# Builds annex (annex.so and libannex.a only) in a temporary folder,
# installs it into a temporary prefix, and builds examples/install-check/
# app.c against the installed copy twice:
#   1. with pkg-config:   cc app.c $(pkg-config --cflags --libs annex)
#   2. with CMake:        find_package(annex) + annex::annex_static
# Each app opens :memory:, calls sqlite3_annex_init (static library),
# creates a table, inserts, checks k-NN and a filtered k-NN, then loads the
# installed annex.so with sqlite3_load_extension and checks the same. Last,
# the stock sqlite3 shell .loads the installed module. Everything temporary
# is removed at exit (ANNEX_KEEP=1 keeps it and prints where).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/deps.sh demo   # compiler, cmake, pkg-config, SQLite headers, sqlite3 shell

CC=${CC:-cc}
work=$(mktemp -d "${TMPDIR:-/tmp}/annex-install-check.XXXXXX")
if [ "${ANNEX_KEEP:-0}" = 1 ]; then
  echo "keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi
prefix=$work/prefix
t0=$SECONDS
fail() { echo "install-check.sh: FAILED: $*" >&2; exit 1; }

echo "== build and install into a temporary prefix"
cmake -S . -B "$work/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j "$(nproc 2>/dev/null || echo 2)" \
  --target annex annex_static annex_shell \
  >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; fail "build"; }
cmake --install "$work/build" --prefix "$prefix" >/dev/null
(cd "$prefix" && find . -type f | sort | sed 's|^\./|  PREFIX/|')
pc=$(find "$prefix" -name annex.pc | head -1)
[ -n "$pc" ] || fail "no annex.pc installed"
[ -f "$prefix/include/annex.h" ] || fail "no include/annex.h installed"
[ -n "$(find "$prefix" -name libannex.a)" ] || fail "no libannex.a installed"
"$prefix/bin/annex" :memory: "SELECT annex_version()" >/dev/null \
  || fail "the installed bin/annex shell does not run"
[ -n "$(find "$prefix" -name annexConfig.cmake)" ] || fail "no annexConfig.cmake installed"
[ -n "$(find "$prefix" -name annexConfigVersion.cmake)" ] || fail "no annexConfigVersion.cmake"

echo "== pkg-config"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
echo "  pkg-config --modversion annex: $(pkg-config --modversion annex)"
echo "  pkg-config --cflags --libs annex: $(pkg-config --cflags --libs annex | sed "s|$prefix|PREFIX|g")"
ext=$(pkg-config --variable=extension annex)
echo "  pkg-config --variable=extension annex: ${ext/#$prefix/PREFIX}"
[ -f "$ext.so" ] || fail "the extension variable does not name the installed module"
# shellcheck disable=SC2046
"$CC" -O2 examples/install-check/app.c $(pkg-config --cflags --libs annex) -o "$work/app-pkgconfig"
"$work/app-pkgconfig" "$ext" || fail "the pkg-config build"

echo "== CMake find_package(annex)"
cmake -S examples/install-check -B "$work/app-cmake" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >"$work/app-cmake.log" 2>&1 \
  || { cat "$work/app-cmake.log"; fail "find_package(annex)"; }
grep -- '-- annex ' "$work/app-cmake.log" | sed "s|$prefix|PREFIX|g; s/^/  /"
cmake --build "$work/app-cmake" >"$work/app-cmake-build.log" 2>&1 \
  || { cat "$work/app-cmake-build.log"; fail "the CMake build"; }
"$work/app-cmake/app" || fail "the CMake build's app"

echo "== sqlite3 shell: .load of the installed module"
out=$(sqlite3 -batch -bail :memory: -cmd ".load $ext" \
  "CREATE VIRTUAL TABLE t USING annex(e float[2]);
   INSERT INTO t(rowid, e) VALUES (1, '[0, 0]'), (2, '[3, 4]');
   SELECT rowid || ' ' || distance FROM t WHERE e MATCH '[0, 0]' AND k = 2;")
[ "$out" = "$(printf '1 0.0\n2 5.0')" ] || fail "sqlite3 shell: got '$out'"
echo "  ok"

echo "install-check: all checks passed ($((SECONDS - t0))s)"
