#!/usr/bin/env bash
# HTTP load on one node: a durable command mix with wrk (32 connections) next to GET /health
# (the HTTP stack without persistence) measured in the same run. Prints requests/s, p50/p99,
# the non-2xx count and the ratio of the two.
#
#   bench/http_load.sh [--node PATH] [--seconds S] [--connections C] [--accounts N] [-- node flags]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_bench_args "$@"

start_node load
open_accounts "$accounts"
echo "kontor-node $url, $connections connections, ${seconds}s per run, $accounts accounts, $(nproc) cores (wrk on the same cores)"
wrk_run "GET /health (reference)" "$connections" "$seconds" "$url/health"
health=$rps
# Warm-up (not reported): every account's actor running, the journal's file preallocated.
KONTOR_BENCH_ACCOUNTS=$accounts wrk_run "warm-up" "$connections" 3 \
  -s "$bench_here/command_mix.lua" "$url" >/dev/null
KONTOR_BENCH_ACCOUNTS=$accounts wrk_run "durable command mix" "$connections" "$seconds" \
  -s "$bench_here/command_mix.lua" "$url"
awk -v a="$rps" -v b="$health" 'BEGIN { printf "ratio durable commands / health: %.0f %%\n", 100 * a / b }'
