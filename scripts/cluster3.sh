#!/usr/bin/env bash
# Starts the 3-node local cluster of config/cluster/ (alpha, beta, gamma on 127.0.0.1: HTTP on
# 8081-8083, cluster ports 7355-7357, data under ./data/<name>), waits until all three are
# ready, prints the membership, and keeps running until Ctrl-C or SIGTERM, which it passes on
# to every node (each leaves the cluster gracefully). Logs: ./data/<name>.log.
#
# SIGHUP (kill -HUP $(cat data/cluster3.pid)) does a rolling update, as Kubernetes does to a
# StatefulSet: gamma, then beta, then alpha — SIGTERM, wait for exit code 0, start the binary
# now in build/ on the same data dir, wait until it is ready, then the next one.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/gateway/kontor-node
[ -x "$bin" ] || { echo "cluster3.sh: build first ($bin is missing)" >&2; exit 1; }
mkdir -p data
echo $$ >data/cluster3.pid
names=(alpha beta gamma)
declare -A pid port=([alpha]=8081 [beta]=8082 [gamma]=8083)
stopping=0
stop() {
  trap - INT TERM HUP
  stopping=1
  echo "stopping the cluster"
  for name in "${names[@]}"; do kill -TERM "${pid[$name]}" 2>/dev/null || true; done
  for name in "${names[@]}"; do wait "${pid[$name]}" 2>/dev/null || true; done
  rm -f data/cluster3.pid
}
start() { # start NAME
  "$bin" --config "config/cluster/$1.conf" >>"data/$1.log" 2>&1 &
  pid[$1]=$!
}
wait_ready() { # wait_ready NAME: polls /ready (bounded: 60 s)
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:${port[$1]}/ready" >/dev/null 2>&1 && return 0
    kill -0 "${pid[$1]}" 2>/dev/null || { echo "$1 exited; see data/$1.log" >&2; return 1; }
    sleep 0.1 # poll interval
  done
  echo "$1 was not ready within 60 s; see data/$1.log" >&2
  return 1
}
rolling=0
roll() {
  rolling=1
}
do_roll() {
  local name code
  for name in gamma beta alpha; do
    echo "rolling update: stopping $name (SIGTERM)"
    kill -TERM "${pid[$name]}"
    code=0
    wait "${pid[$name]}" || code=$?
    [ "$code" = 0 ] || echo "rolling update: $name exited with $code (see data/$name.log)" >&2
    start "$name"
    wait_ready "$name" || return 1
    echo "rolling update: $name is ready again (pid ${pid[$name]})"
  done
  echo "rolling update: done"
}
trap stop INT TERM
trap roll HUP
for name in "${names[@]}"; do start "$name"; done
for name in "${names[@]}"; do wait_ready "$name" || { stop; exit 1; }; done
curl -s http://127.0.0.1:8081/cluster/members; echo
echo "cluster up: HTTP on 127.0.0.1:8081, :8082, :8083 (Ctrl-C stops it; kill -HUP $$ rolls it)"
# Waits for a signal or for a node to exit (a node that ends by itself ends the cluster).
while [ "$stopping" = 0 ]; do
  wait -n "${pid[@]}" || true
  if [ "$rolling" = 1 ]; then
    do_roll || { stop; exit 1; }
    rolling=0
    continue
  fi
  [ "$stopping" = 1 ] && break
  for name in "${names[@]}"; do
    kill -0 "${pid[$name]}" 2>/dev/null || { echo "$name exited; stopping the cluster" >&2; stop; exit 1; }
  done
done
