#!/usr/bin/env bash
# Read-side cost and lag: the durable command mix (32 connections) on a node with the read side
# off, then on a fresh node with it on, in the same run. Prints both request rates, their ratio
# (goal >= 90 %), and the projection lag p50/p99 (journal commit -> read-model commit, per event,
# from the node's kontor_projection_lag_seconds histogram; goal p99 <= 100 ms).
#
#   bench/projection_lag.sh [--node PATH] [--seconds S] [--connections C] [--accounts N] [-- node flags]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_bench_args "$@"
echo "$connections connections, ${seconds}s per run, $accounts accounts, $(nproc) cores (wrk on the same cores)"

start_node off --read-side off
open_accounts "$accounts"
KONTOR_BENCH_ACCOUNTS=$accounts wrk_run "command mix, read side off" "$connections" "$seconds" \
  -s "$bench_here/command_mix.lua" "$url"
off=$rps
stop_node

start_node on --read-side on
open_accounts "$accounts"
KONTOR_BENCH_ACCOUNTS=$accounts wrk_run "command mix, read side on" "$connections" "$seconds" \
  -s "$bench_here/command_mix.lua" "$url"
on=$rps
# Let the read side finish, then read its lag histogram.
for _ in $(seq 1 200); do
  lag=$(curl -s "$url/metrics" | awk '$1=="kontor_projection_lag_events" {print $2}')
  [ "$lag" = "0" ] && break
  sleep 0.05 # poll until the read model caught up
done
curl -s "$url/metrics" > "$work/metrics.txt"
stop_node

awk -v on="$on" -v off="$off" 'BEGIN { printf "write rate with read side / without: %.0f %% (goal >= 90 %%)\n", 100 * on / off }'
# Percentiles from the cumulative histogram, interpolated linearly inside a bucket.
awk '
  /^kontor_projection_lag_seconds_bucket/ {
    match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5)
    n++; bound[n] = (le == "+Inf") ? 1e9 : le + 0; cum[n] = $2 + 0
  }
  END {
    total = cum[n]
    if (total == 0) { print "no lag observations"; exit 1 }
    split("0.5 0.99", qs, " ")
    for (k = 1; k <= 2; k++) {
      target = qs[k] * total; lo = 0; prev = 0
      for (i = 1; i <= n; i++) {
        if (cum[i] >= target) {
          frac = (cum[i] == prev) ? 1 : (target - prev) / (cum[i] - prev)
          v[k] = (lo + frac * (bound[i] - lo)) * 1000
          break
        }
        lo = bound[i]; prev = cum[i]
      }
    }
    printf "projection lag over %d events: p50 %.1f ms, p99 %.1f ms (goal p99 <= 100 ms)\n", total, v[1], v[2]
  }' "$work/metrics.txt"
