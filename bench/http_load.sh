#!/usr/bin/env bash
# HTTP load on one node: a durable command mix with wrk (32 connections) next to GET /health
# (the HTTP stack without persistence) measured in the same run. Prints requests/s, p50/p99,
# the non-2xx count and the ratio of the two.
#
#   bench/http_load.sh [--node PATH] [--seconds S] [--connections C] [--accounts N] [-- extra node flags]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
node="$here/../build/gateway/kontor-node"
seconds=15
connections=32
accounts=1000
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --node) node=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --accounts) accounts=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is missing: scripts/setup.sh installs it" >&2; exit 2; }

work=$(mktemp -d /tmp/kontor-bench-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$node" --data-dir "$work/data" --http-address 127.0.0.1 --http-port 0 "${extra[@]}" >"$work/node.log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 200); do
  port=$(grep -oE 'ready: HTTP on [0-9.]+:[0-9]+' "$work/node.log" | grep -oE '[0-9]+$' || true)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/node.log"; exit 1; }
  sleep 0.05 # poll the log until the node is ready
done
[ -n "$port" ] || { echo "node did not start"; cat "$work/node.log"; exit 1; }
url="http://127.0.0.1:$port"

# Open the accounts with one curl process (keep-alive), limit 10^11 so purchases are accepted.
for i in $(seq 0 $((accounts - 1))); do
  [ "$i" -gt 0 ] && echo next
  printf 'url = "%s/accounts"\ndata = "{\\"id\\":\\"acc-%d\\",\\"owner\\":\\"Bench\\",\\"country\\":\\"DE\\",\\"currency\\":\\"EUR\\",\\"limit\\":100000000000}"\nheader = "Content-Type: application/json"\noutput = "/dev/null"\n' "$url" "$i"
done > "$work/open.curl"
curl -s -K "$work/open.curl"
opened=$(curl -s "$url/accounts/acc-$((accounts - 1))?consistent=true" | grep -c '"version"' || true)
[ "$opened" = 1 ] || { echo "accounts were not opened"; exit 1; }

run() { # key, label, then wrk arguments
  local key=$1 label=$2; shift 2
  local out
  out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency "$@")
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%-28s %10s req/s   p50 %-8s p99 %-8s non-2xx %s\n' "$label" "$rps" "$p50" "$p99" "${non2xx:-0}"
  echo "$rps" > "$work/$key.rps"
}

echo "kontor-node $url, $connections connections, ${seconds}s per run, $accounts accounts, $(nproc) cores (wrk on the same cores)"
run health "GET /health (reference)" "$url/health"
KONTOR_BENCH_ACCOUNTS=$accounts run mix "durable command mix" -s "$here/command_mix.lua" "$url"
awk -v a="$(cat "$work/mix.rps")" -v b="$(cat "$work/health.rps")" \
  'BEGIN { if (b > 0) printf "ratio durable commands / health: %.0f %%\n", 100 * a / b }'
