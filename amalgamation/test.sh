#!/usr/bin/env bash
# test.sh — generate the amalgamation and test what it builds. Exits non-zero
# on any failure. Run from anywhere; writes only under amalgamation/out/.
#
#   amalgamation/test.sh
#
# 1. amalgamation/mkamalgamation.py writes out/annex.c and out/annex.h.
# 2. The loadable extension is built exactly as documented, with no -march:
#        cc -O2 -fPIC -shared annex.c -o annex.so -lm
#    and must export sqlite3_annex_init.
# 3. The project's C test suite (every annex_test() of tests/CMakeLists.txt,
#    plus its extra add_test() runs such as test_batch_noblas) is compiled
#    against annex.c built with -DSQLITE_CORE instead of libannex.a, twice:
#    plain, and with -fopenmp -DANNEX_HAVE_OPENMP.
# 4. The stock sqlite3 shell .loads out/annex.so and runs smoke.sql (create,
#    insert, k-NN, filters, radius, update/delete, int8/bit, integrity-check,
#    k-NN checked against brute force); the output must equal
#    smoke.expected. The kernel set annex picked must be the best this CPU
#    has (run-time dispatch intact). With qemu-x86_64 (Debian qemu-user;
#    installed when run as root) the same smoke runs on an emulated CPU
#    without AVX (must pick "portable") and one with AVX2 (must pick "avx2").
# 5. With aarch64-linux-gnu-gcc present, the same cc line builds for AArch64,
#    and test_distance runs under qemu-aarch64 when the arm64 libraries are
#    installed (scripts/test-arm64.sh installs them).
#
# Environment: ANNEX_DATA_DIR (default ../shared/data from the repository
# root), CC (default cc).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/deps.sh test

CC=${CC:-cc}
py=/usr/bin/python3
[ -x "$py" ] || py=python3
out=amalgamation/out
export ANNEX_DATA_DIR=${ANNEX_DATA_DIR:-$root/../shared/data}
if [ ! -d "$ANNEX_DATA_DIR" ]; then
  echo "amalgamation/test.sh: the shared datasets are missing at $ANNEX_DATA_DIR" >&2
  echo "  (set ANNEX_DATA_DIR to the folder holding sift5k/, mnist10k/...)" >&2
  exit 1
fi
t0=$SECONDS
fail() { echo "amalgamation/test.sh: FAILED: $*" >&2; exit 1; }

echo "== generate"
"$py" amalgamation/mkamalgamation.py
wc -l "$out/annex.c" "$out/annex.h"

echo "== build the loadable extension"
echo "(cd $out && $CC -O2 -fPIC -shared annex.c -o annex.so -lm)"
(cd "$out" && "$CC" -O2 -fPIC -shared annex.c -o annex.so -lm)
nm -D --defined-only "$out/annex.so" | grep -qw sqlite3_annex_init \
  || fail "annex.so does not export sqlite3_annex_init"

echo "== the C test suite against annex.c (-DSQLITE_CORE)"
# "name extra.c ..." per annex_test(), then "name command VAR=value ..." per
# extra add_test() of tests/CMakeLists.txt
tests=$("$py" - <<'EOF'
import re
t = open("tests/CMakeLists.txt").read()
t = re.sub(r"#[^\n]*", "", t)
for args in re.findall(r"\bannex_test\(([^)]*)\)", t):
    if "${" in args:
        continue      # the call inside annex_slow_test() itself
    print("T " + " ".join(args.split()))
for name, cmd in re.findall(r"\badd_test\(\s*NAME\s+(\S+)\s+COMMAND\s+(\S+)\s*\)", t):
    if "${" in name + cmd:
        continue      # the one inside annex_test() itself
    env = re.search(r"set_tests_properties\(\s*%s\b[^)]*ENVIRONMENT\s+\"([^\"]*)\"" % re.escape(name), t)
    extra = [e for e in (env.group(1).split(";") if env else [])
             if not e.startswith(("ANNEX_DATA_DIR=", "ANNEX_SO="))]
    print("X %s %s %s" % (name, cmd, " ".join(extra)))
EOF
)
[ -n "$tests" ] || fail "no tests found in tests/CMakeLists.txt"
ntest=0
for variant in plain openmp; do
  dir=$out/tests-$variant
  mkdir -p "$dir"
  flags=(-O2 -DSQLITE_CORE)
  [ "$variant" = openmp ] && flags+=(-fopenmp -DANNEX_HAVE_OPENMP)
  "$CC" "${flags[@]}" -c "$out/annex.c" -o "$dir/annex.o"
  while read -r kind name rest; do
    [ "$kind" = T ] || continue
    extra=()
    for s in $rest; do extra+=("tests/$s"); done
    "$CC" "${flags[@]}" -I"$out" -Iext -Itests "tests/$name.c" "${extra[@]}" \
      "$dir/annex.o" -o "$dir/$name" -lsqlite3 -lcmocka -lm
  done <<<"$tests"
  while read -r kind name rest; do
    if [ "$kind" = T ]; then
      cmd=$name; envs=()
    else
      read -r cmd envline <<<"$rest"
      read -r -a envs <<<"${envline:-}"
    fi
    s=$SECONDS
    if ! log=$(env ${envs[@]+"${envs[@]}"} "$dir/$cmd" 2>&1); then
      echo "$log" | tail -40
      fail "$variant: $name"
    fi
    summary=$(echo "$log" | grep -E '^\[  PASSED  \]' | tail -1 || true)
    printf '  %-7s %-20s ok  %3ss  %s\n' "$variant" "$name" $((SECONDS - s)) "$summary"
    ntest=$((ntest + 1))
  done <<<"$tests"
done

echo "== sqlite3 shell: .load $out/annex.so + amalgamation/smoke.sql"
expect_kernels() {   # the best kernel set for the CPU flags on stdin
  local f; f=" $(cat) "
  has() { for x in "$@"; do [[ $f == *" $x "* ]] || return 1; done; }
  if has avx512f avx512bw avx512vl; then echo avx512
  elif has avx2 fma; then echo avx2
  else echo portable; fi
}
shell=$(command -v sqlite3)   # a path: qemu does not search PATH
smoke() {   # smoke LABEL EXPECTED_KERNELS [launcher...]
  local label=$1 want=$2; shift 2
  local got kern
  # stdout only: qemu warns on stderr about CPU features TCG lacks
  got=$("$@" "$shell" -batch -bail :memory: -cmd ".load $out/annex" \
          < amalgamation/smoke.sql 2>"$out/smoke.err") \
    || { echo "$got" | tail -20; grep -v '^qemu' "$out/smoke.err"; fail "smoke ($label)"; }
  if ! diff <(echo "$got") amalgamation/smoke.expected; then
    grep -v '^qemu' "$out/smoke.err" || true
    fail "smoke ($label): output differs from amalgamation/smoke.expected"
  fi
  kern=$("$@" "$shell" -batch -bail :memory: -cmd ".load $out/annex" \
    "CREATE VIRTUAL TABLE t USING annex(e float[4]);
     SELECT value FROM annex_info('t') WHERE key = 'kernels';" 2>/dev/null)
  [ "$kern" = "$want" ] || fail "smoke ($label): kernel set '$kern', expected '$want'"
  printf '  %-34s ok  (%d lines match, kernels=%s)\n' "$label" \
    "$(wc -l < amalgamation/smoke.expected)" "$kern"
}
arch=$(uname -m)
case "$arch" in
  x86_64)
    smoke "native $arch" "$(grep -m1 '^flags' /proc/cpuinfo | expect_kernels)"
    if ! command -v qemu-x86_64 >/dev/null && [ "$(id -u)" -eq 0 ]; then
      echo "installing qemu-user (emulated CPUs for the dispatch check)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq qemu-user >/dev/null; }
    fi
    if command -v qemu-x86_64 >/dev/null; then
      smoke "qemu-x86_64 -cpu Nehalem (no AVX)" portable qemu-x86_64 -cpu Nehalem
      smoke "qemu-x86_64 -cpu Haswell (AVX2)" avx2 qemu-x86_64 -cpu Haswell
    else
      echo "  (qemu-x86_64 missing and not root: emulated-CPU dispatch check skipped)"
    fi ;;
  aarch64) smoke "native $arch" neon ;;
  *) smoke "native $arch" portable ;;
esac
# a bad vector fails with annex's message, not a crash
if msg=$(sqlite3 -batch :memory: -cmd ".load $out/annex" \
     "CREATE VIRTUAL TABLE t USING annex(e float[4]);
      INSERT INTO t(rowid, e) VALUES (1, '[1, 2, 3]');" 2>&1); then
  fail "a 3-dimension vector was accepted by a float[4] column"
fi
case "$msg" in
  *"the vector has 3 dimensions, the column expects 4"*) echo "  error message ok" ;;
  *) fail "unexpected error message: $msg" ;;
esac

if [ "$arch" = x86_64 ] && command -v aarch64-linux-gnu-gcc >/dev/null; then
  echo "== AArch64 (cross)"
  mkdir -p "$out/arm64"
  (cd "$out" && aarch64-linux-gnu-gcc -O2 -fPIC -shared annex.c -o arm64/annex.so -lm)
  echo "  aarch64-linux-gnu-gcc -O2 -fPIC -shared annex.c -o arm64/annex.so -lm: ok"
  if command -v qemu-aarch64 >/dev/null && [ -e /usr/lib/aarch64-linux-gnu/libcmocka.so ] \
     && [ -e /usr/lib/aarch64-linux-gnu/libsqlite3.so ]; then
    aarch64-linux-gnu-gcc -O2 -DSQLITE_CORE -I"$out" -Iext -Itests tests/test_distance.c \
      "$out/annex.c" -o "$out/arm64/test_distance" -lsqlite3 -lcmocka -lm
    log=$(qemu-aarch64 -L /usr/aarch64-linux-gnu \
          -E LD_LIBRARY_PATH=/lib:/usr/lib/aarch64-linux-gnu:/lib/aarch64-linux-gnu \
          "$out/arm64/test_distance" 2>&1) || { echo "$log" | tail -30; fail "arm64 test_distance"; }
    echo "  test_distance under qemu-aarch64: ok  $(echo "$log" | grep -E '^\[  PASSED  \]' | tail -1)"
  else
    echo "  (arm64 cmocka/sqlite3 or qemu-aarch64 missing: test run skipped)"
  fi
fi

echo "amalgamation: all checks passed ($ntest test runs, $((SECONDS - t0))s)"
