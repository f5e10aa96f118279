# Shared by the HTTP benchmarks: start a node (or a cluster of nodes) on a temp dir, open
# accounts, run wrk. Source it; it defines parse_bench_args, start_node, stop_node, open_accounts,
# wrk_run, the cluster helpers below (start_member, ...) and sets $url, $work.

bench_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node_bin="$bench_here/../build/gateway/kontor-node"
work=$(mktemp -d /tmp/kontor-bench-XXXXXX)
node_pid=""
url=""

seconds=15
connections=32
measured_pids=() # the nodes whose CPU wrk_run and wrk_parallel count (empty: every node)
accounts=1000
node_flags=()

# parse_bench_args "$@": --node PATH, --seconds S, --connections C, --accounts N, and after
# `--` flags for every node the benchmark starts.
parse_bench_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --node) node_bin=$2; shift 2 ;;
      --seconds) seconds=$2; shift 2 ;;
      --connections) connections=$2; shift 2 ;;
      --accounts) accounts=$2; shift 2 ;;
      --) shift; node_flags=("$@"); break ;;
      *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
  done
}

stop_node() {
  if [ -n "$node_pid" ]; then
    kill "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  node_pid=""
}
# Everything this script started stops with it: the node, cluster members, background jobs
# (wrk, pollers), the reserved ports' locks.
# After a failure the node logs are kept (the path is printed).
bench_cleanup() {
  local status=$? j keep
  for j in $(jobs -p); do
    is_member_pid "$j" || kill "$j" 2>/dev/null || true
  done
  stop_node
  stop_members
  release_ports
  if [ "$status" != 0 ] && ls "$work"/*.log >/dev/null 2>&1; then
    keep=$(mktemp -d /tmp/kontor-bench-logs-XXXXXX)
    cp "$work"/*.log "$keep"/ && echo "node logs kept in $keep" >&2
  fi
  rm -rf "$work"
}
trap bench_cleanup EXIT

# start_node NAME [node flags...]: a fresh data dir per NAME; sets $url.
start_node() {
  local name=$1; shift
  command -v wrk >/dev/null || { echo "wrk is missing: scripts/setup.sh installs it" >&2; exit 2; }
  "$node_bin" --data-dir "$work/$name" --http-address 127.0.0.1 --http-port 0 "$@" "${node_flags[@]}" \
    >"$work/$name.log" 2>&1 &
  node_pid=$!
  local port=""
  for _ in $(seq 1 400); do
    port=$(grep -oE 'ready: HTTP on [0-9.]+:[0-9]+' "$work/$name.log" | grep -oE '[0-9]+$' || true)
    [ -n "$port" ] && break
    kill -0 "$node_pid" 2>/dev/null || { cat "$work/$name.log"; exit 1; }
    sleep 0.05 # poll the log until the node is ready
  done
  [ -n "$port" ] || { echo "node did not start"; cat "$work/$name.log"; exit 1; }
  url="http://127.0.0.1:$port"
}

# open_accounts N: acc-0 .. acc-(N-1), limit 10^11, with one keep-alive curl process.
open_accounts() {
  local n=$1
  for i in $(seq 0 $((n - 1))); do
    [ "$i" -gt 0 ] && echo next
    printf 'url = "%s/accounts"\ndata = "{\\"id\\":\\"acc-%d\\",\\"owner\\":\\"Bench\\",\\"country\\":\\"%s\\",\\"currency\\":\\"EUR\\",\\"limit\\":100000000000}"\nheader = "Content-Type: application/json"\noutput = "/dev/null"\n' \
      "$url" "$i" "$([ $((i % 2)) = 0 ] && echo DE || echo AT)"
  done > "$work/open.curl"
  curl -s -K "$work/open.curl"
  curl -s "$url/accounts/acc-$((n - 1))?consistent=true" | grep -q '"version"' \
    || { echo "accounts were not opened" >&2; exit 1; }
}

# node_counters [PID...]: "<cpu ticks> <context switches>" of the given processes, by default of
# every node this script runs (the single node and every cluster member), all threads summed.
node_counters() {
  local pids=("$@") ticks switches p
  if [ $# = 0 ]; then
    [ -n "$node_pid" ] && pids+=("$node_pid")
    for p in "${member_pid[@]}"; do pids+=("$p"); done
  fi
  ticks=0
  for p in "${pids[@]}"; do
    ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  switches=$(for p in "${pids[@]}"; do cat /proc/"$p"/task/*/status 2>/dev/null; done \
    | awk '/ctxt_switches/ {s += $2} END {print s + 0}')
  echo "$ticks $switches"
}

# started_counters: node_counters of every process this script started and has not reaped yet: the
# nodes, the cluster members and $helper_pids (e.g. a webhook receiver, a second node kept aside),
# so machine_share does not count them as others' CPU.
helper_pids=()
started_counters() {
  local pids=() p
  [ -n "$node_pid" ] && pids+=("$node_pid")
  for p in "${member_pid[@]}" "${helper_pids[@]}"; do pids+=("$p"); done
  [ ${#pids[@]} -gt 0 ] || { echo "0 0"; return; }
  node_counters "${pids[@]}"
}

# machine_counters: "<steal ticks> <all ticks> <busy ticks> <this script's ticks>" (/proc/stat;
# busy = user + nice + system + irq + softirq; this script = the shell and its reaped children,
# e.g. wrk and curl).
machine_counters() {
  local own
  own=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$$/stat")
  awk -v own="$own" '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t, $2 + $3 + $4 + $7 + $8, own }' /proc/stat
}

# machine_share BEFORE AFTER NODE_BEFORE NODE_AFTER: "<steal %> <others %>": the share of the
# machine's CPU time the hypervisor gave to other VMs, and the share used by processes this
# script did not start (other people's builds and tests on the same cores).
machine_share() {
  awk -v b="$1" -v a="$2" -v nb="$3" -v na="$4" 'BEGIN {
    split(b, x, " "); split(a, y, " "); split(nb, u, " "); split(na, v, " ")
    all = y[2] - x[2]; if (all <= 0) all = 1
    others = (y[3] - x[3]) - (v[1] - u[1]) - (y[4] - x[4]); if (others < 0) others = 0
    printf "%.0f %.0f\n", 100 * (y[1] - x[1]) / all, 100 * others / all }'
}

# wrk_run LABEL CONNECTIONS SECONDS [wrk args...]: prints one line; sets $rps, $p50, $p99 and
# $cpu_us/$switches (CPU time and context switches per request of the nodes in $measured_pids,
# by default of every node), $steal (% of the
# machine's CPU time the hypervisor gave to others during the run: the VM's own noise) and
# $others (% used by processes this script did not start).
wrk_run() {
  local label=$1 connections=$2 seconds=$3; shift 3
  local out before after all_before all_after requests m_before m_after
  before=$(node_counters "${measured_pids[@]}")
  all_before=$(started_counters)
  m_before=$(machine_counters)
  out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency "$@")
  after=$(node_counters "${measured_pids[@]}")
  all_after=$(started_counters)
  m_after=$(machine_counters)
  read -r steal others < <(machine_share "$m_before" "$m_after" "$all_before" "$all_after")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  read -r cpu_us switches < <(awk -v b="$before" -v a="$after" -v n="$requests" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { split(b, x, " "); split(a, y, " ");
             printf "%.0f %.1f\n", (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) / n }')
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%-32s %10s req/s   p50 %-8s p99 %-8s non-2xx %-4s node %4s us CPU, %4s switches per request, steal %s %%, others %s %%\n' \
    "$label" "$rps" "$p50" "$p99" "${non2xx:-0}" "$cpu_us" "$switches" "$steal" "$others"
}

# ---- clusters on this machine (all members on 127.0.0.1) ----------------------------------

declare -A member_pid=() member_url=() member_log=() member_port=() member_starts=()
declare -A member_flags=()
number_of_shards=64
cluster_secret="bench-secret-$$"
cluster_seeds=""
port_lock_fds=()

# is_member_pid PID: whether PID is a running cluster member started here.
is_member_pid() {
  local p
  for p in "${member_pid[@]}"; do [ "$p" = "$1" ] && return 0; done
  return 1
}

# reserve_ports N: sets ports=(...) to N free TCP ports on 127.0.0.1, each locked for this
# script's life in /tmp/kontor-test-ports (the lock directory the tests use, so concurrent test
# runs and benches never pick the same cluster port).
reserve_ports() {
  local n=$1 lo hi port fd tries=0
  read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
  hi=$((lo - 1)); lo=10000 # below the ephemeral range, as the tests choose
  mkdir -p /tmp/kontor-test-ports && chmod 1777 /tmp/kontor-test-ports 2>/dev/null || true
  ports=()
  while [ ${#ports[@]} -lt "$n" ]; do
    tries=$((tries + 1))
    [ "$tries" -gt 2000 ] && { echo "no free ports in $lo-$hi" >&2; exit 1; }
    port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    exec {fd}<>"/tmp/kontor-test-ports/$port.lock"
    if flock -n "$fd" && [ -z "$(ss -Htan "( sport = :$port or dport = :$port )")" ]; then
      ports+=("$port"); port_lock_fds+=("$fd")
    else
      exec {fd}>&-
    fi
  done
}

release_ports() {
  local fd
  for fd in "${port_lock_fds[@]}"; do exec {fd}>&-; done
  port_lock_fds=()
}

# start_member NAME CLUSTER_PORT [node flags...]: starts a cluster member on 127.0.0.1 with its
# data in $work/NAME (kept across restarts), seeds $cluster_seeds and secret $cluster_secret;
# each start logs to its own file ($work/NAME-N.log, in ${member_log[NAME]}). Returns at once:
# wait_member NAME waits until it serves HTTP. The flags are kept for restart_member.
start_member() {
  local name=$1 cport=$2; shift 2
  member_port[$name]=$cport
  member_flags[$name]="$*"
  member_starts[$name]=$(( ${member_starts[$name]:-0} + 1 ))
  member_log[$name]="$work/$name-${member_starts[$name]}.log"
  member_url[$name]=""
  "$node_bin" --node-name "$name" --data-dir "$work/$name" --http-address 127.0.0.1 --http-port 0 \
    --cluster-port "$cport" --cluster-bind-address 127.0.0.1 --cluster-advertise-address 127.0.0.1 \
    --seeds "$cluster_seeds" --cluster-secret "$cluster_secret" "$@" "${node_flags[@]}" \
    >"${member_log[$name]}" 2>&1 &
  member_pid[$name]=$!
}

# restart_member NAME: starts NAME again with the flags, port and data directory it had.
restart_member() {
  local name=$1
  # shellcheck disable=SC2086 # the kept flags are words
  start_member "$name" "${member_port[$name]}" ${member_flags[$name]}
}

# wait_member NAME: waits (bounded: 60 s) until NAME logged its HTTP port and answers /ready;
# sets ${member_url[NAME]}.
wait_member() {
  local name=$1 port=""
  for _ in $(seq 1 1200); do
    if [ -z "$port" ]; then
      port=$(grep -oE 'ready: HTTP on [0-9.]+:[0-9]+' "${member_log[$name]}" | grep -oE '[0-9]+$' || true)
    fi
    if [ -n "$port" ] && curl -sf -m 1 "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then
      member_url[$name]="http://127.0.0.1:$port"
      return 0
    fi
    kill -0 "${member_pid[$name]}" 2>/dev/null || { echo "$name exited:" >&2; tail -20 "${member_log[$name]}" >&2; exit 1; }
    sleep 0.05 # poll until the member is ready (bounded)
  done
  echo "$name did not become ready in 60 s:" >&2; tail -20 "${member_log[$name]}" >&2; exit 1
}

# signal_member NAME SIGNAL: sends SIGNAL to NAME's process (KILL/TERM also reap it).
signal_member() {
  local name=$1 sig=$2 pid=${member_pid[$1]:-}
  [ -n "$pid" ] || return 0
  kill -s "$sig" "$pid" 2>/dev/null || true
  if [ "$sig" = KILL ] || [ "$sig" = 9 ]; then
    wait "$pid" 2>/dev/null || true
    unset 'member_pid[$name]'
  fi
}

# stop_member NAME [SECONDS]: SIGTERM (a graceful leave), then SIGKILL after SECONDS (default 30).
stop_member() {
  local name=$1 limit=${2:-30} pid=${member_pid[$1]:-}
  [ -n "$pid" ] || return 0
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((limit * 20))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05 # poll until it exited (bounded)
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'member_pid[$name]'
}

# stop_members: stops every running member (SIGTERM to all at once, SIGKILL after 20 s).
stop_members() {
  local name pids=()
  for name in "${!member_pid[@]}"; do
    pids+=("${member_pid[$name]}")
    kill -CONT "${member_pid[$name]}" 2>/dev/null || true
    kill -TERM "${member_pid[$name]}" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 400); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.05 # poll until it exited (bounded)
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  member_pid=()
}

# members_of URL: one line per member as URL's node sees it: "NAME STATUS REACHABLE".
members_of() {
  curl -s -m 1 "$1/cluster/members" | grep -oE '"node":"[^"]*"[^}]*' \
    | sed -E 's/"node":"([^"]*)".*"status":"([^"]*)".*"reachable":([a-z]+).*/\1 \2 \3/'
}

# shards_of URL: one line per shard as URL's node sees it: "SHARD OWNER STATE" (owner null while
# unallocated).
shards_of() {
  curl -s -m 2 "$1/cluster/shards" | grep -oE '"shard":[0-9]+,"owner":("[^"]*"|null),"state":"[^"]*"' \
    | sed -E 's/"shard":([0-9]+),"owner":"?([^",]*)"?,"state":"([^"]*)"/\1 \2 \3/'
}

# wait_settled N NAME...: waits (bounded: 60 s) until every named member sees N members up and
# reachable and every shard allocated (none moving or unavailable).
wait_settled() {
  local n=$1 name ok; shift
  for _ in $(seq 1 600); do
    ok=1
    for name in "$@"; do
      [ "$(members_of "${member_url[$name]}" | grep -c ' up true$')" = "$n" ] || { ok=0; break; }
      [ "$(shards_of "${member_url[$name]}" | grep -c ' allocated$')" = "$number_of_shards" ] || { ok=0; break; }
    done
    [ "$ok" = 1 ] && return 0
    sleep 0.1 # poll until the cluster settled (bounded)
  done
  echo "the cluster did not settle in 60 s:" >&2
  for name in "$@"; do echo "$name sees:" >&2; members_of "${member_url[$name]}" >&2; done
  exit 1
}

# shard_of ID [N]: sets $shard to FNV-1a-64(ID) mod N (default $number_of_shards), exactly as
# runtime/core/ids.hpp's shard_of (bash's 64-bit arithmetic wraps like uint64_t; the unsigned
# modulo is rebuilt from the signed one).
shard_of() {
  local id=$1 n=${2:-$number_of_shards} h=1469598103934665603 i c r
  for ((i = 0; i < ${#id}; i++)); do
    printf -v c '%d' "'${id:i:1}"
    h=$(((h ^ c) * 1099511628211))
  done
  r=$((h % n))
  ((r < 0)) && r=$((r + n))
  ((h < 0)) && r=$(((r + ((1 << 62) % n) * 4) % n)) # + 2^64 mod n
  shard=$r
}

# now_ms: sets $ms to the wall-clock time in milliseconds (no fork).
now_ms() {
  local t=${EPOCHREALTIME/./}
  ms=$((t / 1000))
}

# wrk_parallel LABEL CONNECTIONS SECONDS URL... -- [wrk args...]: one wrk per URL at once (the
# connections split among them), e.g. one per cluster member. Prints one line per URL and one
# with the sums and the CPU per request of each cluster member; sets $rps (sum), $p99 (the worst
# wrk's), $cpu_us/$switches (of the nodes in $measured_pids, by default all, per request),
# $steal, $others and $non2xx (sum).
wrk_parallel() {
  local label=$1 connections=$2 seconds=$3; shift 3
  local urls=() pids=() i c n out requests=0 before after all_before all_after m_before m_after r
  while [ $# -gt 0 ] && [ "$1" != -- ]; do urls+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  n=${#urls[@]}
  local name shown per_before=() per_after=() names=()
  mapfile -t names < <(printf '%s\n' "${!member_pid[@]}" | sort)
  [ -n "${names[0]:-}" ] || names=()
  for name in "${names[@]}"; do per_before+=("$(awk '{print $14 + $15}' "/proc/${member_pid[$name]}/stat")"); done
  before=$(node_counters "${measured_pids[@]}")
  all_before=$(started_counters)
  m_before=$(machine_counters)
  for ((i = 0; i < n; i++)); do
    c=$((connections / n + (i < connections % n ? 1 : 0)))
    wrk -t1 -c"$c" -d"${seconds}s" --latency "$@" "${urls[$i]}" >"$work/wrk-$i.out" &
    pids+=($!)
  done
  wait "${pids[@]}"
  after=$(node_counters "${measured_pids[@]}")
  all_after=$(started_counters)
  m_after=$(machine_counters)
  for name in "${names[@]}"; do per_after+=("$(awk '{print $14 + $15}' "/proc/${member_pid[$name]}/stat")"); done
  read -r steal others < <(machine_share "$m_before" "$m_after" "$all_before" "$all_after")
  rps=0; p99=""; non2xx=0
  for ((i = 0; i < n; i++)); do
    out=$(cat "$work/wrk-$i.out")
    r=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    rps=$(awk -v a="$rps" -v b="$r" 'BEGIN { printf "%.2f", a + b }')
    requests=$((requests + $(awk '/requests in/ {print $1}' <<<"$out")))
    non2xx=$((non2xx + $(awk '/Non-2xx/ {n = $5} END {print n + 0}' <<<"$out")))
    shown=${urls[$i]}
    for name in "${names[@]}"; do [ "${member_url[$name]}" = "${urls[$i]}" ] && shown="wrk on $name"; done
    printf '  %-30s %10s req/s   p50 %-8s p99 %-8s non-2xx %s\n' "$shown" "$r" \
      "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" \
      "$(awk '/Non-2xx/ {n = $5} END {print n + 0}' <<<"$out")"
    p99=$(printf '%s\n%s\n' "$p99" "$(awk '$1=="99%" {print $2}' <<<"$out")" | awk '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return -1 }
      NF { if (ms($1) > best) { best = ms($1); keep = $1 } } END { print keep }')
  done
  read -r cpu_us switches < <(awk -v b="$before" -v a="$after" -v n="$requests" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { split(b, x, " "); split(a, y, " ");
             printf "%.0f %.1f\n", (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) / n }')
  if [ ${#names[@]} -gt 0 ]; then
    printf '  CPU per member (us per request):'
    for ((i = 0; i < ${#names[@]}; i++)); do
      awk -v n="${names[$i]}" -v t="$((per_after[i] - per_before[i]))" -v r="$requests" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf " %s %.0f", n, t * 1e6 / hz / r }'
    done
    echo
  fi
  printf '%-32s %10s req/s   p99 %-8s (worst wrk) non-2xx %-4s nodes %4s us CPU, %4s switches per request, steal %s %%, others %s %%\n' \
    "$label" "$rps" "$p99" "$non2xx" "$cpu_us" "$switches" "$steal" "$others"
}
