# Shared by the HTTP benchmarks: start a node on a temp dir, open accounts, run wrk.
# Source it; it defines parse_bench_args, start_node, stop_node, open_accounts, wrk_run and sets
# $url, $work.

bench_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node_bin="$bench_here/../build/gateway/kontor-node"
work=$(mktemp -d /tmp/kontor-bench-XXXXXX)
node_pid=""
url=""

seconds=15
connections=32
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
trap 'stop_node; rm -rf "$work"' EXIT

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

# node_counters: "<cpu ticks> <context switches>" of the running node, all threads summed.
node_counters() {
  local ticks switches
  ticks=$(awk '{print $14 + $15}' "/proc/$node_pid/stat")
  switches=$(cat /proc/"$node_pid"/task/*/status 2>/dev/null \
    | awk '/ctxt_switches/ {s += $2} END {print s}')
  echo "$ticks $switches"
}

# machine_counters: "<steal ticks> <all ticks>" of the whole machine (/proc/stat).
machine_counters() {
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t }' /proc/stat
}

# wrk_run LABEL CONNECTIONS SECONDS [wrk args...]: prints one line; sets $rps, $p50, $p99 and
# $cpu_us/$switches (node CPU time and node context switches per request) and $steal (% of the
# machine's CPU time the hypervisor gave to others during the run: the VM's own noise).
wrk_run() {
  local label=$1 connections=$2 seconds=$3; shift 3
  local out before after requests m_before m_after
  before=$(node_counters)
  m_before=$(machine_counters)
  out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency "$@")
  after=$(node_counters)
  m_after=$(machine_counters)
  steal=$(awk -v b="$m_before" -v a="$m_after" \
    'BEGIN { split(b, x, " "); split(a, y, " "); printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]) }')
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  read -r cpu_us switches < <(awk -v b="$before" -v a="$after" -v n="$requests" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { split(b, x, " "); split(a, y, " ");
             printf "%.0f %.1f\n", (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) / n }')
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%-32s %10s req/s   p50 %-8s p99 %-8s non-2xx %-4s node %4s us CPU, %4s switches per request, steal %s %%\n' \
    "$label" "$rps" "$p50" "$p99" "${non2xx:-0}" "$cpu_us" "$switches" "$steal"
}
