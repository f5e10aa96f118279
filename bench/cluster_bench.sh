#!/usr/bin/env bash
# Cluster figures on this machine, every node, wrk and curl on the same cores, each printed next
# to its reference (measured in the same run) and its goal:
#   throughput  the durable command mix (bench/command_mix.lua, C connections) on 1 node and on
#               a 3-node cluster with one wrk per node (2/3 of the commands forwarded), the two
#               run alternately for R rounds; goal: 3 nodes >= 50 % of 1 node's requests/s
#   latency     in that cluster, the same mix on the accounts whose shard lives on gamma, sent
#               to gamma (local) and to beta (forwarded), alternately, with one connection and
#               with C; p50/p99 forwarded next to local
#   detect      kill -9 / SIGSTOP gamma; alpha and beta each poll /cluster/members every 20 ms
#               until gamma is reachable:false (median and max of T trials); goal <= 2 s
#   handoff     a 2-node cluster; E events in one shard of the node that is not the coordinator;
#               SIGTERM it (a graceful leave moves its shards, one at a time); the filled shard's
#               move (coordinator log: "moving shard S" -> "shard S moved") next to the empty
#               shards' moves of the same leave (median of T trials); goal <= 1 s
# Also prints the machine's CPU steal and the CPU share of processes this script did not start.
#
#   bench/cluster_bench.sh [--node PATH] [--seconds S] [--connections C] [--accounts N]
#                          [--rounds R] [--trials T] [--events E] [--parts throughput,latency,detect,handoff]
#                          [-- flags for every node]
set -euo pipefail

trials=5
rounds=3
events=10000
parts=throughput,latency,detect,handoff
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) trials=$2; shift 2 ;;
    --events) events=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    --) rest+=("$@"); break ;;
    *) rest+=("$1"); shift ;;
  esac
done
source "$(dirname "$0")/lib.sh"
seconds=10 # per wrk run; every figure takes 2 x R runs
parse_bench_args "${rest[@]}"
[ "$events" -ge 100 ] || { echo "--events: at least 100 (one per account opened in the shard)" >&2; exit 2; }
[ -x "$node_bin" ] || { echo "build first: $node_bin is missing" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: scripts/setup.sh installs it" >&2; exit 2; }
has_part() { [[ ",$parts," == *",$1,"* ]]; }

# median/max of whole numbers, one per line on stdin: "MEDIAN MAX".
median_max() {
  sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%g %g\n", m, v[NR] }'
}

# log_ms "2026-11-22T10:00:00.123Z ..." -> epoch milliseconds of the line's time stamp.
log_ms() {
  date -u -d "${1%% *}" +%s%3N
}

# start_cluster N [node flags...]: a fresh cluster of alpha, beta[, gamma] (the first seed is
# alpha, so it is the oldest member: leader, coordinator and poller); waits until every member
# sees N members up and every shard allocated.
cluster_names=()
start_cluster() {
  local n=$1 i all=(alpha beta gamma); shift
  stop_members
  release_ports
  reserve_ports "$n"
  cluster_names=("${all[@]:0:n}")
  cluster_seeds=""
  for ((i = 0; i < n; i++)); do
    cluster_seeds+="${cluster_seeds:+,}127.0.0.1:${ports[$i]}"
    rm -rf "${work:?}/${cluster_names[$i]}"
  done
  for ((i = 0; i < n; i++)); do
    start_member "${cluster_names[$i]}" "${ports[$i]}" --seed-timeout 500ms --min-members "$n" "$@"
  done
  for i in "${cluster_names[@]}"; do wait_member "$i"; done
  wait_settled "$n" "${cluster_names[@]}"
}

echo "cluster_bench: $(nproc) cores shared by every node, wrk and curl; ${seconds}s per wrk run," \
  "$connections connections, $accounts accounts, $rounds rounds, $trials trials, $events events per filled shard"
m_start=$(machine_counters)
n_start=$(node_counters)

# ---- 1 node vs 3 nodes, local vs forwarded -----------------------------------------------------
# Both setups run side by side (idle, the cluster costs ~3 % of the machine) and their runs
# alternate, round after round: other load on the machine then hits both alike.

# as_ms 1.23ms|456.00us|1.02s -> milliseconds.
as_ms() {
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v / 1000; else if (v ~ /ms$/) print v + 0; else if (v ~ /s$/) print v * 1000; else print -1 }'
}

if has_part throughput || has_part latency; then
  echo
  echo "== the command mix on 1 node and on a 3-node cluster (run alternately, $rounds rounds)"
  if has_part throughput; then
    start_node single
    single_url=$url
    open_accounts "$accounts"
    single_pid=$node_pid
  fi
  start_cluster 3
  url=${member_url[alpha]}
  open_accounts "$accounts" # through alpha: 2/3 of them forwarded to their owners
  all_urls=("${member_url[alpha]}" "${member_url[beta]}" "${member_url[gamma]}")
  cluster_pids=("${member_pid[alpha]}" "${member_pid[beta]}" "${member_pid[gamma]}")
  # Warm-up (not reported): every account's actor running, the journals' files preallocated.
  measured_pids=("${cluster_pids[@]}")
  KONTOR_BENCH_ACCOUNTS=$accounts wrk_parallel "warm-up" "$connections" 3 "${all_urls[@]}" -- \
    -s "$bench_here/command_mix.lua" >/dev/null

  if has_part throughput; then
    measured_pids=("$single_pid")
    KONTOR_BENCH_ACCOUNTS=$accounts wrk_run "warm-up" "$connections" 3 \
      -s "$bench_here/command_mix.lua" "$single_url" >/dev/null
    : >"$work/tp-one.txt"; : >"$work/tp-three.txt"
    for ((r = 1; r <= rounds; r++)); do
      measured_pids=("$single_pid")
      KONTOR_BENCH_ACCOUNTS=$accounts wrk_run "1 node (reference), round $r" "$connections" "$seconds" \
        -s "$bench_here/command_mix.lua" "$single_url"
      echo "$rps $(as_ms "$p99") $steal $others $non2xx" >>"$work/tp-one.txt"
      measured_pids=("${cluster_pids[@]}")
      KONTOR_BENCH_ACCOUNTS=$accounts wrk_parallel "3 nodes, round $r" "$connections" "$seconds" \
        "${all_urls[@]}" -- -s "$bench_here/command_mix.lua"
      echo "$rps $(as_ms "$p99") $steal $others $non2xx" >>"$work/tp-three.txt"
    done
    stop_node
  fi

  if has_part latency; then
    echo
    echo "== a forwarded command next to a local one: the mix on the accounts whose shard gamma owns ($rounds rounds)"
    shards_of "${member_url[gamma]}" >"$work/shards.txt"
    : >"$work/gamma-ids.txt"
    for ((i = 0; i < accounts; i++)); do
      shard_of "acc-$i"
      awk -v s="$shard" '$1 == s && $2 == "gamma" { found = 1 } END { exit !found }' "$work/shards.txt" \
        && echo "acc-$i" >>"$work/gamma-ids.txt"
    done
    echo "$(wc -l <"$work/gamma-ids.txt") of $accounts accounts live on gamma;" \
      "local: sent to gamma; forwarded: sent to beta, which forwards them to gamma"
    measured_pids=("${cluster_pids[@]}")
    for c in 1 "$connections"; do
      : >"$work/lat-local-$c.txt"; : >"$work/lat-fwd-$c.txt"
      for ((r = 1; r <= rounds; r++)); do
        KONTOR_BENCH_IDS="$work/gamma-ids.txt" wrk_run "local, $c conn., round $r" "$c" "$seconds" \
          -s "$bench_here/command_mix.lua" "${member_url[gamma]}"
        echo "$(as_ms "$p50") $(as_ms "$p99") $rps $steal $others" >>"$work/lat-local-$c.txt"
        KONTOR_BENCH_IDS="$work/gamma-ids.txt" wrk_run "forwarded, $c conn., round $r" "$c" "$seconds" \
          -s "$bench_here/command_mix.lua" "${member_url[beta]}"
        echo "$(as_ms "$p50") $(as_ms "$p99") $rps $steal $others" >>"$work/lat-fwd-$c.txt"
      done
    done
  fi
  measured_pids=()
fi

# ---- failure detection -------------------------------------------------------------------------
# poll_unreachable URL NAME T0 OUT: polls URL's /cluster/members every ~20 ms until NAME is
# reachable:false; writes the ms since T0 to OUT ("never" after 15 s).
poll_unreachable() {
  local url=$1 name=$2 t0=$3 out=$4
  for _ in $(seq 1 750); do
    if curl -s -m 1 "$url/cluster/members" | grep -qE "\"node\":\"$name\"[^}]*\"reachable\":false"; then
      now_ms
      echo $((ms - t0)) >"$out"
      return 0
    fi
    sleep 0.02 # the poll interval
  done
  echo never >"$out"
}

# detect_once SIGNAL: sends SIGNAL to gamma; sets $a/$b (ms until alpha/beta showed it
# reachable:false, or "never"), $seen (the later of the two) and $logged (the later of their
# "gamma is unreachable" log lines); fails when one of them did not see it in 15 s.
detect_once() {
  local sig=$1 t0 pa pb o line l
  now_ms; t0=$ms
  kill -s "$sig" "${member_pid[gamma]}"
  poll_unreachable "${member_url[alpha]}" gamma "$t0" "$work/seen-alpha" &
  pa=$!
  poll_unreachable "${member_url[beta]}" gamma "$t0" "$work/seen-beta" &
  pb=$!
  [ "$sig" = KILL ] && signal_member gamma KILL # reap it
  wait "$pa" "$pb"
  a=$(cat "$work/seen-alpha") b=$(cat "$work/seen-beta")
  [ "$a" != never ] && [ "$b" != never ] || return 1
  seen=$((a > b ? a : b))
  logged=""
  for o in alpha beta; do
    line=$(grep -h "gamma is unreachable" "${member_log[$o]}" | tail -1)
    l=$(($(log_ms "$line") - t0))
    [ -z "$logged" ] || [ "$l" -gt "$logged" ] && logged=$l
  done
  return 0
}

if has_part detect; then
  echo
  echo "== time until alpha and beta show a killed / frozen gamma as reachable:false ($trials trials each)"
  [ ${#cluster_names[@]} = 3 ] && [ -n "${member_pid[gamma]:-}" ] || start_cluster 3
  # The measurement's resolution: one poll's round trip (curl + grep) while all is well.
  : >"$work/poll.txt"
  for _ in $(seq 1 20); do
    now_ms; t=$ms
    curl -s -m 1 "${member_url[alpha]}/cluster/members" | grep -qE '"reachable":false' || true
    now_ms; echo $((ms - t)) >>"$work/poll.txt"
    sleep 0.02 # the poll interval
  done
  read -r poll_med poll_max < <(median_max <"$work/poll.txt")
  m_before=$(machine_counters); n_before=$(node_counters)
  for sig in KILL STOP; do
    : >"$work/detect-$sig.txt"; : >"$work/logged-$sig.txt"
    for ((t = 1; t <= trials; t++)); do
      detect_once "$sig" || { echo "gamma was not seen unreachable in 15 s (alpha: $a, beta: $b)" >&2; exit 1; }
      echo "$seen" >>"$work/detect-$sig.txt"
      echo "$logged" >>"$work/logged-$sig.txt"
      printf '  %-4s trial %d: seen by alpha after %5d ms, by beta after %5d ms (logged: %d ms)\n' \
        "$sig" "$t" "$a" "$b" "$logged"
      [ "$sig" = STOP ] && kill -CONT "${member_pid[gamma]}"
      # A new incarnation of gamma for every trial: its peers' detectors start afresh (a freeze
      # stays in their heartbeat history; see the repeated freeze below).
      signal_member gamma KILL
      restart_member gamma
      wait_member gamma
      wait_settled 3 alpha beta gamma
    done
  done
  m_after=$(machine_counters); n_after=$(node_counters)
  read -r detect_steal detect_others < <(machine_share "$m_before" "$m_after" "$n_before" "$n_after")
  # The same incarnation frozen twice, 3 s apart: the second detection shows what the first
  # pause left in the peers' detectors.
  sleep 3 # a heartbeat history of normal intervals before the first freeze
  detect_once STOP || seen="not within 15000"
  first_freeze=$seen
  kill -CONT "${member_pid[gamma]}"
  wait_settled 3 alpha beta gamma
  sleep 3 # the gap between the two freezes
  detect_once STOP || seen="not within 15000"
  second_freeze=$seen
  kill -CONT "${member_pid[gamma]}"
  echo "  STOP twice, 3 s apart, same incarnation: seen after $first_freeze ms, then after $second_freeze ms"
  read -r kill_med kill_max < <(median_max <"$work/detect-KILL.txt")
  read -r stop_med stop_max < <(median_max <"$work/detect-STOP.txt")
  read -r kill_log_med _ < <(median_max <"$work/logged-KILL.txt")
  read -r stop_log_med _ < <(median_max <"$work/logged-STOP.txt")
fi
stop_members

# ---- handoff of one filled shard ---------------------------------------------------------------
# fill_shard URL SHARD COUNT: opens 100 accounts whose shard is SHARD and deposits into them until
# the shard holds COUNT events (32 requests in flight); every answer must be 201.
fill_shard() {
  local url=$1 s=$2 count=$3 k=0 ids=() j codes
  while [ ${#ids[@]} -lt 100 ]; do
    shard_of "s$s-$k"
    [ "$shard" = "$s" ] && ids+=("s$s-$k")
    k=$((k + 1))
  done
  printf '%s\n' "${ids[@]}" >"$work/filled-ids.txt"
  # curl configs: one block per request, "next" between blocks.
  for id in "${ids[@]}"; do
    printf 'next\nurl = "%s/accounts"\ndata = "{\\"id\\":\\"%s\\",\\"owner\\":\\"Bench\\",\\"country\\":\\"DE\\",\\"currency\\":\\"EUR\\",\\"limit\\":1000}"\nheader = "Content-Type: application/json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
      "$url" "$id"
  done | tail -n +2 >"$work/open.curl"
  for ((j = 0; j < count - 100; j++)); do
    printf 'next\nurl = "%s/accounts/%s/transactions"\ndata = "{\\"txId\\":\\"f%d\\",\\"kind\\":\\"deposit\\",\\"amount\\":1,\\"currency\\":\\"EUR\\"}"\nheader = "Content-Type: application/json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
      "$url" "${ids[$((j % 100))]}" "$j"
  done | tail -n +2 >"$work/deposit.curl"
  # The opens first (one connection), then the deposits (32 in flight).
  codes=$(curl -s -K "$work/open.curl" 2>/dev/null | sort | uniq -c)
  [ "$(awk '$2 == 201 {print $1}' <<<"$codes")" = 100 ] || { echo "opening accounts: $codes" >&2; exit 1; }
  if [ "$count" -gt 100 ]; then
    codes=$(curl -s -Z --parallel-max 32 -K "$work/deposit.curl" 2>/dev/null | sort | uniq -c)
    [ "$(awk '$2 == 201 {print $1}' <<<"$codes")" = $((count - 100)) ] || { echo "deposits: $codes" >&2; exit 1; }
  fi
}

if has_part handoff; then
  echo
  echo "== hand-off of one shard holding $events events vs empty shards, the same leave ($trials trials)"
  : >"$work/handoff-full.txt"; : >"$work/handoff-empty.txt"
  m_before=$(machine_counters); n_before=$(node_counters)
  for ((t = 1; t <= trials; t++)); do
    # One move at a time: each shard's move is timed alone.
    start_cluster 2 --max-simultaneous-rebalance 1
    coord=$(curl -s "${member_url[alpha]}/cluster/shards" | grep -oE '"coordinator":"[^"]*"' | cut -d'"' -f4)
    leaver=$([ "$coord" = alpha ] && echo beta || echo alpha)
    mapfile -t owned < <(shards_of "${member_url[$coord]}" | awk -v n="$leaver" '$2 == n {print $1}')
    s=${owned[$((${#owned[@]} / 2))]} # one in the middle: empty shards move before and after it
    now_ms; f0=$ms
    fill_shard "${member_url[$leaver]}" "$s" "$events"
    now_ms; fill_ms=$((ms - f0))
    stop_member "$leaver"
    # The coordinator's log: when each move started and ended.
    log=${member_log[$coord]}
    while read -r line; do
      shard_no=$(sed -E 's/.*moving shard ([0-9]+) .*/\1/' <<<"$line")
      start=$(log_ms "$line")
      end_line=$(grep -E "\[coordinator\] shard $shard_no (moved|not moved)" "$log" | head -1)
      [[ "$end_line" == *" moved ("* ]] || { echo "shard $shard_no did not move: $end_line" >&2; exit 1; }
      moved_events=$(sed -E 's/.* moved \(([0-9]+) events\).*/\1/' <<<"$end_line")
      d=$(($(log_ms "$end_line") - start))
      if [ "$shard_no" = "$s" ]; then
        echo "$d" >>"$work/handoff-full.txt"
        full_ms=$d full_events=$moved_events
        took=$(grep -E "took over shard $s " "$log" | head -1)
        copy_ms=$(($(log_ms "$took") - start))
      else
        [ "$moved_events" = 0 ] || { echo "shard $shard_no moved with $moved_events events" >&2; exit 1; }
        echo "$d" >>"$work/handoff-empty.txt"
      fi
    done < <(grep -E "\[coordinator\] moving shard [0-9]+ from $leaver to" "$log")
    # Every event arrived: each filled account has its 1 + (E - 100) / 100 events on the new owner.
    versions=$(sed "s|.*|url = \"${member_url[$coord]}/accounts/&?consistent=true\"|" "$work/filled-ids.txt" \
      | curl -s -K - | grep -oE '"version":[0-9]+' | cut -d: -f2 | awk '{ s += $1 } END { print s }')
    [ "$versions" = "$events" ] || { echo "after the move the accounts hold $versions events, not $events" >&2; exit 1; }
    printf '  trial %d: shard %s (%s events, filled in %d ms) moved %s -> %s in %d ms (copied after %d ms); %d empty shards: %s ms\n' \
      "$t" "$s" "$full_events" "$fill_ms" "$leaver" "$coord" "$full_ms" "$copy_ms" "$((${#owned[@]} - 1))" \
      "$(tail -n $((${#owned[@]} - 1)) "$work/handoff-empty.txt" | median_max | awk '{print "median " $1 ", max " $2}')"
    stop_members
  done
  m_after=$(machine_counters); n_after=$(node_counters)
  read -r handoff_steal handoff_others < <(machine_share "$m_before" "$m_after" "$n_before" "$n_after")
  read -r full_med full_max < <(median_max <"$work/handoff-full.txt")
  read -r empty_med empty_max < <(median_max <"$work/handoff-empty.txt")
fi

# ---- summary -----------------------------------------------------------------------------------
m_end=$(machine_counters)
read -r all_steal all_others < <(machine_share "$m_start" "$m_end" "$n_start" "$(node_counters)")
echo
echo "== summary (steal: CPU the hypervisor gave to other VMs; others: CPU of processes this script did not start)"
# column N of FILE -> "MEDIAN MAX" / "MEAN".
col_median_max() { awk -v c="$2" '{ print $c }' "$1" | median_max; }
col_mean() { awk -v c="$2" '{ s += $c } END { printf "%.0f", s / NR }' "$1"; }
if has_part throughput; then
  one=$(col_mean "$work/tp-one.txt" 1) three=$(col_mean "$work/tp-three.txt" 1)
  ratios=$(paste "$work/tp-three.txt" "$work/tp-one.txt" | awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), 100 * $1 / $6 }')
  read -r p99_one _ < <(col_median_max "$work/tp-one.txt" 2)
  read -r p99_three _ < <(col_median_max "$work/tp-three.txt" 2)
  printf 'command mix, 3 nodes vs 1 node: %s vs %s req/s = %s %% (rounds: %s %%; goal >= 50 %%); p99 %s vs %s ms (median of rounds); non-2xx %s vs %s\n' \
    "$three" "$one" "$(awk -v a="$three" -v b="$one" 'BEGIN { printf "%.0f", 100 * a / b }')" "$ratios" \
    "$p99_three" "$p99_one" "$(col_mean "$work/tp-three.txt" 5)" "$(col_mean "$work/tp-one.txt" 5)"
  printf '  steal %s %%, others %s %% (mean of the runs)\n' \
    "$(cat "$work/tp-one.txt" "$work/tp-three.txt" >"$work/tp-all.txt"; col_mean "$work/tp-all.txt" 3)" "$(col_mean "$work/tp-all.txt" 4)"
fi
if has_part latency; then
  for c in 1 "$connections"; do
    read -r lp50 _ < <(col_median_max "$work/lat-local-$c.txt" 1)
    read -r lp99 lp99max < <(col_median_max "$work/lat-local-$c.txt" 2)
    read -r fp50 _ < <(col_median_max "$work/lat-fwd-$c.txt" 1)
    read -r fp99 fp99max < <(col_median_max "$work/lat-fwd-$c.txt" 2)
    printf 'forwarded vs local, %2s connection(s): p99 %s vs %s ms (max of rounds %s vs %s), p50 %s vs %s ms, %s vs %s req/s\n' \
      "$c" "$fp99" "$lp99" "$fp99max" "$lp99max" "$fp50" "$lp50" \
      "$(col_mean "$work/lat-fwd-$c.txt" 3)" "$(col_mean "$work/lat-local-$c.txt" 3)"
  done
  cat "$work"/lat-*.txt >"$work/lat-all.txt"
  printf '  steal %s %%, others %s %% (mean of the runs)\n' "$(col_mean "$work/lat-all.txt" 4)" "$(col_mean "$work/lat-all.txt" 5)"
fi
if has_part detect; then
  printf 'detection, kill -9:  median %s ms, max %s ms (node logs: median %s ms); goal <= 2000 ms\n' "$kill_med" "$kill_max" "$kill_log_med"
  printf 'detection, SIGSTOP:  median %s ms, max %s ms (node logs: median %s ms); goal <= 2000 ms; steal %s %%, others %s %%\n' \
    "$stop_med" "$stop_max" "$stop_log_med" "$detect_steal" "$detect_others"
  printf '  (reference: one poll round trip median %s ms, max %s ms; heartbeat every 200 ms, acceptable pause 800 ms)\n' "$poll_med" "$poll_max"
fi
if has_part handoff; then
  printf 'hand-off of a shard with %s events: median %s ms, max %s ms; an empty shard in the same leaves: median %s ms, max %s ms; goal <= 1000 ms; steal %s %%, others %s %%\n' \
    "$events" "$full_med" "$full_max" "$empty_med" "$empty_max" "$handoff_steal" "$handoff_others"
fi
echo "whole run: steal $all_steal %, others $all_others %"
