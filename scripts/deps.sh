#!/usr/bin/env bash
# deps.sh — install the Debian packages annex needs, when they are missing.
#
#   scripts/deps.sh build     compiler, CMake, SQLite headers, OpenBLAS, libedit
#   scripts/deps.sh test      the above plus cmocka, the sqlite3 shell, tmux
#                             (the shell's interactive test) and NumPy
#   scripts/deps.sh demo      the build set plus the sqlite3 shell
#
# Installs with apt-get when run as root; otherwise prints what to install.
set -euo pipefail

build_pkgs=(gcc make cmake pkg-config libsqlite3-dev libopenblas-dev libedit-dev)
case "${1:-build}" in
  build) want=("${build_pkgs[@]}") ;;
  test)  want=("${build_pkgs[@]}" libcmocka-dev sqlite3 tmux python3-numpy) ;;
  demo)  want=("${build_pkgs[@]}" sqlite3) ;;
  *) echo "usage: $0 build|test|demo" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "annex needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
