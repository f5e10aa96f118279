#!/usr/bin/env bash
# Starts the 3-node local cluster of config/cluster/ (alpha, beta, gamma on 127.0.0.1: HTTP on
# 8081-8083, cluster ports 7355-7357, data under ./data/<name>), waits until all three are
# ready, prints the membership, and keeps running until Ctrl-C or SIGTERM, which it passes on
# to every node (each leaves the cluster gracefully). Logs: ./data/<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/gateway/kontor-node
[ -x "$bin" ] || { echo "cluster3.sh: build first ($bin is missing)" >&2; exit 1; }
mkdir -p data
pids=()
stop() {
  trap - INT TERM
  echo "stopping the cluster"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM
for name in alpha beta gamma; do
  "$bin" --config "config/cluster/$name.conf" >>"data/$name.log" 2>&1 &
  pids+=($!)
done
for port in 8081 8082 8083; do
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then break; fi
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "a node exited; see data/*.log" >&2; stop; exit 1; }
    done
    sleep 0.1 # poll until the node is ready (bounded: 60 s)
  done
done
curl -s http://127.0.0.1:8081/cluster/members; echo
echo "cluster up: HTTP on 127.0.0.1:8081, :8082, :8083 (Ctrl-C stops it)"
wait "${pids[@]}"
