#!/usr/bin/env bash
# The thank-you policy's cost and lag: the durable command mix (bench/command_mix.lua, C
# connections) on a node with the thank-you webhook on (every deposit of at least --min-amount
# minor units POSTed to a local receiver, bench/webhook_receiver.py, that answers 200 at once)
# and on a node without it (the reference: same flags, no webhook URL), both running side by side
# and measured alternately for R rounds. Prints:
#   - requests/s with the policy on and off, and their ratio (goal >= 90 %);
#   - the policy lag per delivered notification: its arrival at the receiver minus the deposit's
#     `at` (decided just before its append and fsync; the notification body carries it), p50/p99/max
#     (goal p99 <= 100 ms), and the deliveries next to the qualifying deposits in the node's feed;
#   - the machine's CPU steal and the CPU share of processes this script did not start.
# The receiver shares the 2 cores with the nodes and wrk, so its CPU counts against the policy.
#
#   bench/policy_bench.sh [--node PATH] [--seconds S] [--connections C] [--accounts N]
#                         [--rounds R] [--min-amount A] [-- flags for both nodes]
set -euo pipefail

rounds=3
min_amount=450 # the mix deposits 1..500: ~10 % of deposits qualify
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --min-amount) min_amount=$2; shift 2 ;;
    --) rest+=("$@"); break ;;
    *) rest+=("$1"); shift ;;
  esac
done
source "$(dirname "$0")/lib.sh"
seconds=10 # per wrk run; the figures take 2 x R runs
parse_bench_args "${rest[@]}"
[ -x "$node_bin" ] || { echo "build first: $node_bin is missing" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: scripts/setup.sh installs it" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is missing (the webhook receiver)" >&2; exit 2; }

receiver_pid=""
off_pid=""
# Stops the receiver and the reference node (lib.sh's bench_cleanup stops the other node, the
# other jobs and removes the temp dir). A Ctrl-C reaches every process of the terminal's group,
# the nodes too, but bash goes on when wrk handled it; the receiver's exit status 130 tells: then
# everything is removed (no logs kept, as after a failure) and the script ends with 130.
policy_cleanup() {
  local status=$? p rc interrupted=0
  set +e # a failed kill or wait must not end the cleanup
  for p in "$off_pid" "$receiver_pid"; do
    [ -n "$p" ] || continue
    kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    rc=$?
    [ "$p" = "$receiver_pid" ] && [ "$rc" = 130 ] && interrupted=1
  done
  if [ "$interrupted" = 1 ] || [ "$status" = 130 ]; then
    echo "interrupted" >&2
    (exit 0) # bench_cleanup reads the status from $?: keep no logs
    bench_cleanup
    exit 130
  fi
  (exit "$status") # bench_cleanup reads the status from $?
  bench_cleanup
}
trap policy_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# as_ms 1.23ms|456.00us|1.02s -> milliseconds.
as_ms() {
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v / 1000; else if (v ~ /ms$/) print v + 0; else if (v ~ /s$/) print v * 1000; else print -1 }'
}
# col_mean FILE N: the mean of column N.
col_mean() { awk -v c="$2" '{ s += $c } END { printf "%.0f", s / NR }' "$1"; }

# policy_backlog URL: events the policy has not carried out yet (kontor_policy_lag_events).
policy_backlog() {
  curl -s -m 2 "$1/metrics" | awk '$1 ~ /^kontor_policy_lag_events/ { n += $2 } END { print n + 0 }'
}
# wait_policy_idle URL: waits (bounded: 120 s) until the policy caught up (0 also where it does not
# run yet: wait for a first delivery before).
wait_policy_idle() {
  local n
  for _ in $(seq 1 1200); do
    n=$(policy_backlog "$1")
    [ "$n" = 0 ] && return 0
    sleep 0.1 # poll until the outbox is empty (bounded)
  done
  echo "the policy did not catch up in 120 s ($n events left)" >&2
  exit 1
}

echo "policy_bench: $(nproc) cores shared by both nodes, the receiver, wrk and curl; ${seconds}s per wrk run," \
  "$connections connections, $accounts accounts, $rounds rounds, thank-you for deposits >= $min_amount"

python3 "$bench_here/webhook_receiver.py" serve "$work/deliveries.txt" >"$work/receiver.port" 2>"$work/receiver.log" &
receiver_pid=$!
for _ in $(seq 1 200); do
  [ -s "$work/receiver.port" ] && break
  kill -0 "$receiver_pid" 2>/dev/null || { cat "$work/receiver.log" >&2; exit 1; }
  sleep 0.05 # poll until the receiver listens (bounded)
done
receiver_port=$(head -1 "$work/receiver.port")
[ -n "$receiver_port" ] || { echo "the receiver did not start" >&2; exit 1; }

# Both nodes run the read side (policies follow its poller); only the webhook URL differs.
start_node off --read-side on
off_pid=$node_pid off_url=$url
open_accounts "$accounts"
start_node on --read-side on --thank-you-webhook-url "http://127.0.0.1:$receiver_port/thank-you" \
  --thank-you-min-amount "$min_amount"
on_pid=$node_pid on_url=$url
open_accounts "$accounts"
helper_pids=("$off_pid" "$receiver_pid") # their CPU is this script's, not others'

# Warm-up (not reported): every account's actor running, the journals' files preallocated, the
# policy started and caught up.
m_start=$(machine_counters)
n_start=$(started_counters)
for u in "$off_url" "$on_url"; do
  KONTOR_BENCH_ACCOUNTS=$accounts wrk_run "warm-up" "$connections" 3 -s "$bench_here/command_mix.lua" "$u" >/dev/null
done
for _ in $(seq 1 600); do
  [ -s "$work/deliveries.txt" ] && break
  sleep 0.1 # poll until the policy (a singleton, started after the node joined itself) delivers (bounded)
done
[ -s "$work/deliveries.txt" ] || { echo "no notification arrived in 60 s after the warm-up" >&2; exit 1; }
wait_policy_idle "$on_url"

now_ms
since_ms=$ms
: >"$work/off.txt"; : >"$work/on.txt"
for ((r = 1; r <= rounds; r++)); do
  measured_pids=("$off_pid")
  KONTOR_BENCH_ACCOUNTS=$accounts wrk_run "policy off (reference), round $r" "$connections" "$seconds" \
    -s "$bench_here/command_mix.lua" "$off_url"
  echo "$rps $(as_ms "$p99") $steal $others ${non2xx:-0}" >>"$work/off.txt"
  measured_pids=("$on_pid")
  KONTOR_BENCH_ACCOUNTS=$accounts wrk_run "policy on, round $r" "$connections" "$seconds" \
    -s "$bench_here/command_mix.lua" "$on_url"
  echo "$rps $(as_ms "$p99") $steal $others ${non2xx:-0}" >>"$work/on.txt"
done
backlog=$(policy_backlog "$on_url")
wait_policy_idle "$on_url"
m_end=$(machine_counters)
read -r all_steal all_others < <(machine_share "$m_start" "$m_end" "$n_start" "$(started_counters)")

echo
echo "== summary (steal: CPU the hypervisor gave to other VMs; others: CPU of processes this script did not start)"
on=$(col_mean "$work/on.txt" 1) off=$(col_mean "$work/off.txt" 1)
ratios=$(paste "$work/on.txt" "$work/off.txt" | awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), 100 * $1 / $6 }')
printf 'command mix, policy on vs off: %s vs %s req/s = %s %% (rounds: %s %%; goal >= 90 %%); p99 %s vs %s ms (mean of rounds)\n' \
  "$on" "$off" "$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.0f", 100 * a / b }')" "$ratios" \
  "$(awk '{ s += $2 } END { printf "%.1f", s / NR }' "$work/on.txt")" \
  "$(awk '{ s += $2 } END { printf "%.1f", s / NR }' "$work/off.txt")"
echo "policy backlog when the last round ended: $backlog events"
python3 "$bench_here/webhook_receiver.py" report "$work/deliveries.txt" "$on_url" "$min_amount" "$since_ms" | grep -v '^LAG '
printf 'steal %s %%, others %s %% over the whole run (per round: steal %s %%, others %s %% on average)\n' \
  "$all_steal" "$all_others" \
  "$(cat "$work/on.txt" "$work/off.txt" >"$work/all.txt"; col_mean "$work/all.txt" 3)" "$(col_mean "$work/all.txt" 4)"
