#!/usr/bin/env bash
# test_shell.sh — tests of the annex shell without a terminal (ctest: test_shell).
#
#   shell/test_shell.sh PATH/TO/annex
#
# Covers the non-interactive forms (annex DB "SQL", SQL on standard input),
# exit codes (0 / 1 / 2) and "Error: ..." on stderr, every output mode
# against expected text, every dot command, .import-vectors on each file
# format (files written here with /usr/bin/python3 + numpy), .export-vectors
# round trips (byte-identical), .recall on ../shared/data/sift5k (recall
# 1.0000 for the exact index), and that no progress bar reaches a stderr
# that is not a terminal.
#
# Environment: ANNEX_DATA_DIR (default ../shared/data from the repository
# root); ANNEX_SHELL_RUNNER, a command to run the shell through (qemu for
# cross builds); ANNEX_PYTHON (default /usr/bin/python3).
set -u
[ $# -eq 1 ] || { echo "usage: $0 PATH/TO/annex" >&2; exit 2; }
ANNEX_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")" && pwd)
DATA=${ANNEX_DATA_DIR:-$here/../../shared/data}
PY=${ANNEX_PYTHON:-/usr/bin/python3}
RUNNER=${ANNEX_SHELL_RUNNER:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/annex-shell-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
export HOME=$tmp            # no history file outside the test folder
unset ANNEX_PROGRESS

annex() { $RUNNER "$ANNEX_BIN" "$@"; }

nfail=0
npass=0
ok() { npass=$((npass + 1)); }
bad() { nfail=$((nfail + 1)); echo "FAIL: $*"; }

# run ARGS... : stdout in $out, stderr in $err, status in $rc
run() {
  annex "$@" >"$tmp/.out" 2>"$tmp/.err"
  rc=$?
  out=$(cat "$tmp/.out")
  err=$(cat "$tmp/.err")
}
# run_in FILE ARGS... : the same with standard input from FILE
run_in() {
  local f=$1
  shift
  annex "$@" <"$f" >"$tmp/.out" 2>"$tmp/.err"
  rc=$?
  out=$(cat "$tmp/.out")
  err=$(cat "$tmp/.err")
}
expect_rc() { [ "$rc" -eq "$1" ] && ok || bad "$2: exit status $rc, expected $1 (stderr: $err)"; }
expect_out() {
  if [ "$out" == "$1" ]; then ok; else
    bad "$2: output differs"
    diff <(printf '%s\n' "$1") <(printf '%s\n' "$out") | sed 's/^/    /'
  fi
}
expect_out_has() { grep -qE -- "$1" <<<"$out" && ok || bad "$2: output lacks /$1/: $out"; }
expect_err() { grep -qE -- "$1" <<<"$err" && ok || bad "$2: stderr lacks /$1/: $err"; }
expect_no_err() { [ -z "$err" ] && ok || bad "$2: unexpected stderr: $err"; }

# ------------------------------------------------ command line, exit codes
run :memory: "SELECT 1 + 1;"
expect_rc 0 "annex DB SQL"; expect_out "2" "annex DB SQL"; expect_no_err "annex DB SQL"

run :memory: "SELECT 1" "SELECT 'two'" ".mode csv" "SELECT 3, 'a b'"
expect_rc 0 "several arguments"
expect_out $'1\ntwo\n3,a b' "several arguments"

run :memory: "SELECT * FROM nope"
expect_rc 1 "SQL error"; expect_err "^Error: no such table: nope$" "SQL error"

run :memory: "SELECT (1"
expect_rc 1 "incomplete SQL"; expect_err "^Error: incomplete input" "incomplete SQL"

run -nosuchoption
expect_rc 2 "unknown option"; expect_err "unknown option" "unknown option"
expect_err "^usage: annex" "unknown option"

run -help
expect_rc 0 "-help"; expect_out_has "^usage: annex" "-help"
run -version
expect_rc 0 "-version"; expect_out_has "^annex shell [0-9.]+, SQLite 3" "-version"

# an error does not stop the rest, and is reported with its line
cat >script.sql <<'EOF'
-- a comment line, then a statement over three lines
SELECT 1
  +
  2;
SELECT * FROM missing;

/* a block
   comment */ SELECT 'after';
.mode csv
SELECT 'x', 'y'; SELECT 'z';
EOF
run_in script.sql :memory:
expect_rc 1 "stdin script"
expect_out $'3\nafter\nx,y\nz' "stdin script"
expect_err "^Error: near line 5: no such table: missing$" "stdin script"

run_in script.sql -bail :memory:
expect_rc 1 "-bail"; expect_out "3" "-bail"

printf 'SELECT 1;\n.quit\nSELECT 2;\n' >quit.sql
run_in quit.sql :memory:
expect_rc 0 ".quit"; expect_out "1" ".quit"
printf 'SELECT 1;\n.exit\nSELECT 2;\n' >exit.sql
run_in exit.sql :memory:
expect_rc 0 ".exit"; expect_out "1" ".exit"

# last statement without ';' still runs
printf 'SELECT 41 + 1' >nosemi.sql
run_in nosemi.sql :memory:
expect_rc 0 "no final ;"; expect_out "42" "no final ;"

# --------------------------------------------------------- dot commands
run :memory: ".nosuch"
expect_rc 1 "unknown dot command"; expect_err '^Error: unknown command "\.nosuch"' "unknown dot command"
run :memory: ".mode nosuch"
expect_rc 1 ".mode bad"; expect_err "unknown mode" ".mode bad"
run :memory: ".headers maybe"
expect_rc 1 ".headers bad"; expect_err "expects on or off" ".headers bad"
run :memory: ".open"
expect_rc 1 ".open usage"; expect_err "^Error: usage: \.open FILE" ".open usage"
run :memory: ".mode box" ".mode"
expect_rc 0 ".mode query"; expect_out "current output mode: box" ".mode query"

run :memory: ".help"
expect_rc 0 ".help"
for c in open read mode headers timer tables schema info import-vectors \
         export-vectors recall help quit exit; do
  expect_out_has "^\.$c( |$)" ".help lists .$c"
done

run :memory: ".timer on" "SELECT 5"
expect_rc 0 ".timer"
expect_out_has "^5$" ".timer"
expect_out_has "^Run Time: real [0-9.]+ user [0-9.]+ sys [0-9.]+$" ".timer"
run :memory: ".timer on" ".timer off" "SELECT 5"
expect_out "5" ".timer off"

# .open creates a file that a later run sees; .read runs a file
run :memory: ".open opened.db" "CREATE TABLE kept(a); INSERT INTO kept VALUES (7);"
expect_rc 0 ".open"
run opened.db "SELECT a FROM kept"
expect_out "7" ".open persisted"
run :memory: ".open $tmp/no/such/dir/x.db"
expect_rc 1 ".open bad path"; expect_err "^Error: cannot open" ".open bad path"

printf 'SELECT 10;\n.read inner.sql\nSELECT 30;\n' >outer.sql
printf 'SELECT 20;\nSELECT nope;\n' >inner.sql
run :memory: ".read outer.sql"
expect_rc 1 ".read"; expect_out $'10\n20\n30' ".read"
expect_err "^Error: near line 2: no such column: nope$" ".read error line"
run :memory: ".read no-such-file.sql"
expect_rc 1 ".read missing"; expect_err "cannot open" ".read missing"

# ---------------------------------------------------------- output modes
cat >modes.sql <<'EOF'
CREATE TABLE m(id INTEGER, name TEXT, score REAL, note TEXT);
INSERT INTO m VALUES (1, 'alpha', 0.5, NULL), (22, 'b,"c"', -1.25, 'x');
CREATE VIRTUAL TABLE v USING annex(embedding float[3], tag text);
INSERT INTO v(rowid, embedding, tag) VALUES (1, '[1, 0.5, -2]', 'a'),
  (2, '[0.1, 0, 3e-7]', NULL);
CREATE VIRTUAL TABLE w USING annex(e float[12]);
INSERT INTO w(rowid, e) VALUES (7, '[1,2,3,4,5,6,7,8,9,10,11,12]');
EOF
run_in modes.sql modes.db
expect_rc 0 "modes fixture"
q=("SELECT * FROM m" "SELECT rowid, embedding, tag, x'00ff' AS raw FROM v"
   "SELECT e FROM w")

run modes.db "${q[@]}"
expect_out "1|alpha|0.5|
22|b,\"c\"|-1.25|x
1|[1, 0.5, -2]|a|X'00FF'
2|[0.1, 0, 3e-7]||X'00FF'
[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]" "mode list"

run modes.db ".headers on" "${q[0]}"
expect_out 'id|name|score|note
1|alpha|0.5|
22|b,"c"|-1.25|x' "mode list, headers on"
run -header modes.db "${q[0]}"
expect_out_has '^id\|name\|score\|note$' "-header"

run modes.db ".mode box" "${q[@]}"
expect_out "┌────┬───────┬───────┬──────┐
│ id │ name  │ score │ note │
├────┼───────┼───────┼──────┤
│  1 │ alpha │   0.5 │      │
│ 22 │ b,\"c\" │ -1.25 │ x    │
└────┴───────┴───────┴──────┘
┌───────┬────────────────┬─────┬─────────┐
│ rowid │ embedding      │ tag │ raw     │
├───────┼────────────────┼─────┼─────────┤
│     1 │ [1, 0.5, -2]   │ a   │ X'00FF' │
│     2 │ [0.1, 0, 3e-7] │     │ X'00FF' │
└───────┴────────────────┴─────┴─────────┘
┌────────────────────────────────┐
│ e                              │
├────────────────────────────────┤
│ [1, 2, 3, 4, 5, 6, ... 6 more] │
└────────────────────────────────┘" "mode box"

run -table modes.db "${q[@]}"
expect_out "+----+-------+-------+------+
| id | name  | score | note |
+----+-------+-------+------+
|  1 | alpha |   0.5 |      |
| 22 | b,\"c\" | -1.25 | x    |
+----+-------+-------+------+
+-------+----------------+-----+---------+
| rowid | embedding      | tag | raw     |
+-------+----------------+-----+---------+
|     1 | [1, 0.5, -2]   | a   | X'00FF' |
|     2 | [0.1, 0, 3e-7] |     | X'00FF' |
+-------+----------------+-----+---------+
+--------------------------------+
| e                              |
+--------------------------------+
| [1, 2, 3, 4, 5, 6, ... 6 more] |
+--------------------------------+" "mode table"

run modes.db ".mode csv" ".headers on" "${q[@]}"
expect_out 'id,name,score,note
1,alpha,0.5,
22,"b,""c""",-1.25,x
rowid,embedding,tag,raw
1,"[1, 0.5, -2]",a,X'"'"'00FF'"'"'
2,"[0.1, 0, 3e-7]",,X'"'"'00FF'"'"'
e
"[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]"' "mode csv"

run modes.db ".mode json" "${q[@]}"
expect_out '[{"id":1,"name":"alpha","score":0.5,"note":null},
{"id":22,"name":"b,\"c\"","score":-1.25,"note":"x"}]
[{"rowid":1,"embedding":[1, 0.5, -2],"tag":"a","raw":"X'"'"'00FF'"'"'"},
{"rowid":2,"embedding":[0.1, 0, 3e-7],"tag":null,"raw":"X'"'"'00FF'"'"'"}]
[{"e":[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}]' "mode json"
# and it parses as JSON, vectors as arrays
run modes.db ".mode json" "${q[1]}"
"$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); assert d[0]["embedding"]==[1,0.5,-2], d' "$out" \
  && ok || bad "mode json does not parse"

run -line modes.db "${q[0]}" "${q[2]}"
expect_out "   id = 1
 name = alpha
score = 0.5
 note = 

   id = 22
 name = b,\"c\"
score = -1.25
 note = x
e = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]" "mode line"

run modes.db ".mode list" "SELECT NULL, 1.0, x'', 'é'"
expect_out "|1.0|X''|é" "list: null, real, empty blob, utf-8"

# int8 and bit vectors, a quoted column name
run ib.db "CREATE VIRTUAL TABLE i USING annex(v int8[4])" \
  "INSERT INTO i(rowid, v) VALUES (1, annex_int8('[1,-2,3,-128]'))" \
  "CREATE VIRTUAL TABLE b USING annex(\"my vec\" bit[16])" \
  "INSERT INTO b(rowid, \"my vec\") VALUES (1, annex_bit('[1,0,0,0,0,0,0,0,1,1,0,0,0,0,0,1]'))" \
  "SELECT * FROM i" "SELECT * FROM b" ".export-vectors i i.jsonl"
expect_rc 0 "int8 and bit"
expect_out "[1, -2, 3, -128]
[1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1]
exported 1 rows (4 dimensions) to i.jsonl" "int8 and bit vectors print"
[ "$(cat i.jsonl)" = "[1, -2, 3, -128]" ] && ok || bad "int8 export: $(cat i.jsonl)"
run ib.db ".export-vectors b b.jsonl"
expect_rc 1 "bit export"; expect_err "b.my vec is bit\[16\]" "bit export"

# .tables / .schema hide the shadow tables; .info
run modes.db ".tables"
expect_rc 0 ".tables"; expect_out $'m\nv\nw' ".tables"
run modes.db ".tables v%"
expect_out "v" ".tables PATTERN"
run modes.db ".schema v"
expect_out "CREATE VIRTUAL TABLE v USING annex(embedding float[3], tag text);" ".schema"
run modes.db ".info v"
expect_rc 0 ".info"
expect_out_has "^dimensions +3$" ".info"
expect_out_has "^rows +2$" ".info"
expect_out_has "^element +float$" ".info"
expect_out_has "^bytes_chunks +[0-9]+ +\([0-9.]+ KiB\)$" ".info"
run modes.db ".info m"
expect_rc 1 ".info on a plain table"; expect_err "^Error: " ".info on a plain table"

# ------------------------------------------------- vector files: import
"$PY" - <<'EOF' || { echo "FAIL: python3 + numpy could not write the test files"; exit 1; }
import json
import numpy as np
rng = np.random.default_rng(7)
a = rng.standard_normal((100, 8)).astype('<f4')
a[0] = [0, -0.0, 1e-45, 3.4e38, -1e21, 1e-7, 0.1, 1/3]   # awkward values
def vecs(path, arr, dtype):
    with open(path, 'wb') as f:
        for r in arr:
            f.write(np.int32(arr.shape[1]).tobytes()); f.write(r.astype(dtype).tobytes())
vecs('a.fvecs', a, '<f4')
b = rng.integers(0, 256, (50, 16)).astype(np.uint8)
vecs('b.bvecs', b, 'u1')
np.save('a.npy', a)
np.save('f8.npy', a.astype('<f8'))
np.save('fortran.npy', np.asfortranarray(a))
np.save('three.npy', a.reshape(10, 10, 8))
with open('a.csv', 'w') as f:
    for r in a: f.write(','.join(repr(float(x)) for x in r) + '\n')
with open('a.jsonl', 'w') as f:
    for r in a: f.write(json.dumps([float(x) for x in r]) + '\n')
    f.write('\n')                                  # a blank line is skipped
with open('bad.csv', 'w') as f:
    f.write('1,2,3\n4,5,6\n7,8\n')
with open('bad.jsonl', 'w') as f:
    f.write('[1, 2]\n[3, oops]\n')
with open('nan.csv', 'w') as f:
    f.write('1,2\nnan,3\n')
with open('b_row1.txt', 'w') as f:
    f.write(json.dumps([int(x) for x in b[0]]).replace(' ', ''))
with open('a_row2.txt', 'w') as f:
    f.write(json.dumps([float(x) for x in a[1]]))
big = rng.standard_normal((30000, 32)).astype('<f4')
vecs('big.fvecs', big, '<f4')
EOF

for f in a.fvecs b.bvecs a.npy a.csv a.jsonl; do
  name=t_${f/./_}
  run vec.db ".import-vectors $f $name"
  expect_rc 0 "import $f"; expect_no_err "import $f"
  fmt=${f#*.}
  dims=8; rows=100
  if [ "$fmt" = bvecs ]; then dims=16; rows=50; fi
  expect_out_has "^imported $rows rows \($dims dimensions, $fmt\) into $name in [0-9.]+ s: [0-9,]+ rows/s$" "import $f"
  run vec.db "SELECT count(*), min(rowid), max(rowid) FROM $name"
  expect_out "$rows|1|$rows" "import $f: rowid = row + 1"
  run vec.db ".schema $name"
  expect_out "CREATE VIRTUAL TABLE \"$name\" USING annex(\"embedding\" float[$dims]);" "import $f creates the table"
done
# the values: bvecs bytes become floats; every float format reads the same
run vec.db "SELECT annex_json(embedding) FROM t_b_bvecs WHERE rowid = 1"
expect_out "$(cat b_row1.txt)" "bvecs values"
for t in t_a_fvecs t_a_npy t_a_csv t_a_jsonl; do
  run vec.db ".export-vectors $t $t.fvecs"
  expect_rc 0 "export $t"
  expect_out "exported 100 rows (8 dimensions) to $t.fvecs" "export $t"
  cmp -s "$t.fvecs" a.fvecs && ok || bad "$t: the vectors differ from a.fvecs"
done
run vec.db "SELECT annex_json(embedding) FROM t_a_fvecs WHERE rowid = 2"
"$PY" -c 'import json,sys,numpy as np; f=lambda t: np.array(json.loads(t), dtype="<f4")
assert (f(sys.argv[1]) == f(open("a_row2.txt").read())).all()' "$out" \
  && ok || bad "fvecs row 2 values"

# a named column; appending continues the rowids
run vec.db ".import-vectors a.fvecs named vec"
expect_rc 0 "import COLUMN"
run vec.db ".schema named"
expect_out 'CREATE VIRTUAL TABLE "named" USING annex("vec" float[8]);' "import COLUMN"
run vec.db ".import-vectors a.npy named vec"
expect_rc 0 "append"
run vec.db "SELECT count(*), min(rowid), max(rowid) FROM named"
expect_out "200|1|200" "append: rowids continue"
run vec.db ".import-vectors a.npy named embedding"
expect_rc 1 "wrong COLUMN"; expect_err 'is not the vector column of named \(that is "vec"\)' "wrong COLUMN"

# errors leave nothing behind
run vec.db ".import-vectors b.bvecs named"
expect_rc 1 "dimension mismatch"; expect_err "b.bvecs has 16 dimensions, named.vec has 8" "dimension mismatch"
run vec.db ".import-vectors bad.csv t_bad"
expect_rc 1 "bad csv"; expect_err "^Error: bad.csv line 3: 2 numbers, the first row has 3$" "bad csv"
run vec.db ".import-vectors bad.jsonl t_bad"
expect_rc 1 "bad jsonl"; expect_err "bad.jsonl line 2: element 2 is not a finite number" "bad jsonl"
run vec.db ".import-vectors nan.csv t_bad"
expect_rc 1 "nan"; expect_err "nan.csv line 2: element 1 is not a finite number" "nan"
run vec.db ".tables t_bad"
expect_out "" "a failed import rolls back the CREATE"
run vec.db ".import-vectors f8.npy t_bad"
expect_rc 1 "npy f8"; expect_err "little-endian float32 \('<f4'" "npy f8"
run vec.db ".import-vectors fortran.npy t_bad"
expect_rc 1 "npy fortran"; expect_err "C order" "npy fortran"
run vec.db ".import-vectors three.npy t_bad"
expect_rc 1 "npy 3-D"; expect_err "must be 2-D" "npy 3-D"
run vec.db ".import-vectors missing.fvecs t_bad"
expect_rc 1 "missing file"; expect_err "cannot open missing.fvecs" "missing file"
run vec.db ".import-vectors a.txtx t_bad"
expect_rc 1 "unknown extension"; expect_err "unknown file type" "unknown extension"
run vec.db "CREATE TABLE plain(x)" ".import-vectors a.fvecs plain"
expect_rc 1 "plain table"; expect_err '"plain" exists and is not an annex table' "plain table"
run vec.db ".import-vectors a.fvecs"
expect_rc 1 ".import-vectors usage"; expect_err "usage: \.import-vectors FILE TABLE \[COLUMN\]" ".import-vectors usage"
# inside the user's transaction: the import is part of it
run vec.db "BEGIN" ".import-vectors a.fvecs t_tx" "ROLLBACK" ".tables t_tx"
expect_rc 0 "import in a transaction"
expect_out_has "^imported 100 rows" "import in a transaction"
[ "$(tail -n 1 <<<"$out")" != "t_tx" ] && ok || bad "ROLLBACK did not undo the import"

# ------------------------------------------------- export formats, round trips
run vec.db ".export-vectors t_a_fvecs out.npy" ".export-vectors t_a_fvecs out.jsonl" \
           ".export-vectors t_a_fvecs out.csv"
expect_rc 0 "export npy/jsonl/csv"
cmp -s out.npy a.npy && ok || bad "export .npy is not byte-identical to numpy's np.save"
for f in out.jsonl out.csv; do
  run vec.db ".import-vectors $f rt_${f#*.}" ".export-vectors rt_${f#*.} rt_${f#*.}.fvecs"
  expect_rc 0 "round trip $f"
  cmp -s "rt_${f#*.}.fvecs" a.fvecs && ok || bad "round trip through $f changed the vectors"
done
run vec.db ".export-vectors t_a_fvecs x.bvecs"
expect_rc 1 "export bvecs"; expect_err "cannot write .bvecs" "export bvecs"
run vec.db ".export-vectors plain x.fvecs"
expect_rc 1 "export plain"; expect_err '"plain" is not an annex table' "export plain"
run vec.db ".export-vectors t_a_fvecs $tmp/no/dir/x.fvecs"
expect_rc 1 "export bad path"; expect_err "cannot create" "export bad path"

# ------------------------------------------- no progress bar off a terminal
annex bar.db ".import-vectors big.fvecs big" >bar.out 2>bar.err
rc=$?
[ $rc -eq 0 ] && ok || bad "big import failed: $(cat bar.err)"
[ ! -s bar.err ] && ok || bad "stderr is not a terminal but got: $(head -c 200 bar.err | od -c | head -3)"
grep -q $'\r' bar.out && bad "a carriage return reached stdout" || ok
grep -q "^imported 30,000 rows (32 dimensions, fvecs)" bar.out && ok || bad "big import: $(cat bar.out)"

# ------------------------------------------------------ recall on sift5k
if [ -f "$DATA/sift5k/base.fvecs" ]; then
  s=$DATA/sift5k
  run sift.db ".import-vectors $s/base.fvecs sift" \
              ".recall sift $s/query.fvecs $s/groundtruth.ivecs" \
              ".recall sift $s/query.fvecs $s/groundtruth.ivecs 100"
  expect_rc 0 ".recall"; expect_no_err ".recall"
  echo "$out" | sed 's/^/    /'
  expect_out_has "^recall@10  1\.0000  \(200 queries, 2000 of 2000 neighbours found\)$" ".recall k=10"
  expect_out_has "^recall@100  1\.0000  \(200 queries" ".recall k=100"
  expect_out_has "^QPS +[0-9.]+$" ".recall QPS"
  expect_out_has "^latency +p50 [0-9.]+ ms  p99 [0-9.]+ ms$" ".recall latency"
  run sift.db ".export-vectors sift sift.fvecs"
  cmp -s sift.fvecs "$s/base.fvecs" && ok || bad "sift5k export is not byte-identical to base.fvecs"
  run sift.db ".mode box" "SELECT rowid, embedding FROM sift WHERE rowid = 1"
  expect_out_has "^│     1 │ \[[0-9, ]+, \.\.\. 122 more\] │$" "box shows a long vector cut"
  run sift.db ".recall sift $s/query.fvecs $s/groundtruth.ivecs 101"
  expect_rc 1 ".recall k too big"; expect_err "fewer than k = 101" ".recall k too big"
  run sift.db ".recall sift $s/query.fvecs $s/groundtruth.ivecs zero"
  expect_rc 1 ".recall bad k"; expect_err "k must be a positive integer" ".recall bad k"
  run sift.db ".recall sift a.fvecs $s/groundtruth.ivecs"
  expect_rc 1 ".recall dims"; expect_err "a.fvecs has 8 dimensions, sift.embedding has 128" ".recall dims"
else
  bad "the shared datasets are missing: $DATA/sift5k (set ANNEX_DATA_DIR)"
fi

echo "test_shell: $npass checks passed, $nfail failed"
[ $nfail -eq 0 ]
