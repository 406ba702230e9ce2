#!/usr/bin/env bash
# test_tmux.sh — the interactive annex shell in a real terminal, driven
# through tmux (ctest: test_shell_tmux, labels shell and interactive).
#
#   shell/test_tmux.sh PATH/TO/annex
#
# Checks, by reading the screen with tmux capture-pane: the prompts
# "annex> " and "   ...> " for a statement typed over two lines; that the
# up arrow recalls it from the history and Enter runs it again; that Ctrl-C
# at a continuation prompt drops the partial statement; that importing a
# 200,000 x 128 file draws a progress bar with a percentage and rows/s
# while it runs and erases it at the end; that the same import with stderr
# redirected to a file draws nothing; that Ctrl-C during an import rolls it
# back; and that .quit saves ~/.annex_history.
# Needs tmux and /usr/bin/python3 with numpy. Takes about 10 s.
set -u
[ $# -eq 1 ] || { echo "usage: $0 PATH/TO/annex" >&2; exit 2; }
ANNEX_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${ANNEX_PYTHON:-/usr/bin/python3}
command -v tmux >/dev/null || { echo "FAIL: tmux is not installed (apt-get install tmux)"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/annex-tmux-test.XXXXXX")
T=(tmux -S "$tmp/tmux.sock" -f /dev/null)   # a private server, removed with $tmp
cleanup() {
  "${T[@]}" kill-server 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1
export HOME=$tmp TERM=${TERM:-xterm}
[ "$TERM" = dumb ] && export TERM=xterm
unset ANNEX_HISTORY ANNEX_PROGRESS TMUX

nfail=0
bad() { nfail=$((nfail + 1)); echo "FAIL: $*"; }
screen() { "${T[@]}" capture-pane -p -J -t "${1:-annex}"; }
# wait_for REGEX [TARGET] [SECONDS]: until a screen line matches
wait_for() {
  local deadline=$((SECONDS + ${3:-10}))
  while [ $SECONDS -lt $deadline ]; do
    screen "${2:-annex}" | grep -qE -- "$1" && return 0
    sleep 0.05
  done
  bad "timed out waiting for /$1/; the screen:"
  screen "${2:-annex}" | grep -v '^$' | sed 's/^/    | /'
  return 1
}
# wait_prompt TEXT: until the screen's last non-blank line is TEXT (the
# prompt, trailing blank trimmed), so that keys reach libedit in raw mode
# rather than the terminal's cooked mode (which would echo ^[[A for Up)
wait_prompt() {
  local deadline=$((SECONDS + 10))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(screen | grep -v '^ *$' | tail -n 1 | sed 's/ *$//')" = "$1" ] && return 0
    sleep 0.05
  done
  bad "timed out waiting for the prompt '$1'; the screen:"
  screen | grep -v '^$' | sed 's/^/    | /'
  return 1
}
# type a line and Enter (tmux reads an argument ending in ';' as a command
# separator unless it is escaped)
send_line() {
  local s=$1
  [[ $s == *';' ]] && s="${s%;}\\;"
  "${T[@]}" send-keys -t annex -l -- "$s"
  "${T[@]}" send-keys -t annex Enter
}

"$PY" -c '
import numpy as np
n, d = 200000, 128
a = np.random.default_rng(3).standard_normal((n, d)).astype("<f4")
np.hstack([np.full((n, 1), d, "<i4").view("<f4"), a]).tofile("big.fvecs")
' || { echo "FAIL: python3 + numpy could not write big.fvecs"; exit 1; }

q=$(printf '%q' "$ANNEX_BIN")
"${T[@]}" new-session -d -s annex -x 160 -y 50 -c "$tmp" \
  "$q t.db; echo annex-exited-\$?; sleep 60" || { echo "FAIL: tmux new-session"; exit 1; }

# 1. a statement over two lines
wait_prompt 'annex>' || exit 1
send_line "SELECT 40 +"
wait_prompt '   ...>'
send_line "  2 AS answer;"
wait_for '^42$'
wait_prompt 'annex>'
screen | grep -qxF 'annex> SELECT 40 +' || bad "first line not echoed after the prompt"
screen | grep -qxF '   ...>   2 AS answer;' || bad "no continuation prompt '   ...> '"

# 2. up arrow: the whole statement comes back as one line
"${T[@]}" send-keys -t annex Up
wait_for '^annex> SELECT 40 \+   2 AS answer;$'
"${T[@]}" send-keys -t annex Enter
for _ in $(seq 100); do
  [ "$(screen | grep -cx '42')" -ge 2 ] && break
  sleep 0.05
done
[ "$(screen | grep -cx '42')" -eq 2 ] || bad "the recalled statement did not run again"
wait_prompt 'annex>'

# 3. Ctrl-C at the continuation prompt drops the partial statement
send_line "SELECT 'dropped'"
wait_prompt '   ...>'
"${T[@]}" send-keys -t annex C-c
wait_prompt 'annex>'
send_line "SELECT 'kept';"
wait_for '^kept$'
wait_prompt 'annex>'
screen | grep -qx 'dropped' && bad "Ctrl-C did not drop the partial statement"

# 4. the progress bar, caught while the import runs
"${T[@]}" send-keys -t annex C-l
sleep 0.2
wait_prompt 'annex>'
send_line ".import-vectors big.fvecs big"
bar=""
deadline=$((SECONDS + 30))
while [ $SECONDS -lt $deadline ]; do
  s=$(screen)
  line=$(grep -E '^import \[[=> ]+\] +[0-9]+\.[0-9]% +[0-9,]+ rows +[0-9.]+[kM]? rows/s +ETA [0-9:]+' <<<"$s" | head -n 1)
  if [ -n "$line" ]; then bar=$line; break; fi
  grep -q '^imported ' <<<"$s" && break
  sleep 0.02
done
if [ -n "$bar" ]; then
  echo "progress bar mid-way: $bar"
  pct=$(sed -E 's/.*\] +([0-9]+)\.[0-9]%.*/\1/' <<<"$bar")
  [ "$pct" -lt 100 ] || bad "the bar was caught at 100%: $bar"
else
  bad "no progress bar with % and rows/s was seen during the import"
fi
wait_for '^imported 200,000 rows \(128 dimensions, fvecs\) into big in [0-9.]+ s: [0-9,]+ rows/s$' annex 60
screen | grep -q 'ETA' && bad "the bar was not erased at the end"
wait_prompt 'annex>'

# 4b. Ctrl-C during an import rolls all of it back
send_line ".import-vectors big.fvecs big2"
for _ in $(seq 400); do
  screen | grep -qE '^import \[|^imported .* into big2' && break
  sleep 0.01
done
"${T[@]}" send-keys -t annex C-c
wait_for '^Error: interrupted after [0-9]+ rows; nothing imported$|^imported .* into big2' annex 30
if screen | grep -q '^imported .* into big2'; then
  echo "note: the import finished before Ctrl-C arrived; interrupt not checked"
else
  wait_prompt 'annex>'
  send_line "SELECT 'tables:' || count(*) FROM pragma_table_list WHERE name = 'big2';"
  wait_for '^tables:0$'
fi
wait_prompt 'annex>'

# 5. the same import with stderr redirected: no bar, nothing on stderr
"${T[@]}" new-window -d -t annex -n redirected -c "$tmp" \
  "$q t2.db '.import-vectors big.fvecs big' 2>err.txt; echo import-done-\$?; sleep 60"
wait_for '^import-done-0$' annex:redirected 60
[ -s err.txt ] && bad "stderr got output: $(od -c err.txt | head -3)"
screen annex:redirected | grep -qE '^imported 200,000 rows' || bad "redirected import: no summary"
screen annex:redirected | grep -q 'rows/s  ETA' && bad "a bar was drawn with stderr redirected"

# 6. .quit saves the history
send_line ".quit"
wait_for '^annex-exited-0$'
grep -q 'answer' "$HOME/.annex_history" 2>/dev/null || bad "~/.annex_history lacks the statement"

echo "--- screen at the end"
screen | grep -v '^$' | sed 's/^/    | /'
if [ $nfail -eq 0 ]; then echo "test_tmux: all checks passed"; else echo "test_tmux: $nfail failed"; fi
[ $nfail -eq 0 ]
