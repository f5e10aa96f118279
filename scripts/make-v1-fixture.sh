#!/usr/bin/env bash
# Regenerates tests/fixtures/v1-journal/: a data directory written by the kontor-node of the last
# commit before event upcasting (schema version 1 everywhere: MoneyDeposited without `source`),
# plus that node's own answers to every read route, which the upcasting component test compares
# the current binary's answers with.
#
#   scripts/make-v1-fixture.sh                 # builds kontor-node of $V1_COMMIT first (~10 min)
#   scripts/make-v1-fixture.sh --binary PATH   # uses a kontor-node built from $V1_COMMIT
#
# Only the v1 binary may write this fixture: a fixture written by a newer binary would test
# nothing. The commands and their order are fixed; event times are the wall clock of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
V1_COMMIT=$(git rev-parse --verify b7a63e0^{commit})
out=tests/fixtures/v1-journal
bin=""
if [ "${1:-}" = "--binary" ]; then
  bin=$2
else
  src=$(mktemp -d /tmp/kontor-v1-src-XXXXXX)
  trap 'rm -rf "$src"' EXIT
  git archive "$V1_COMMIT" | tar -x -C "$src"
  cmake -S "$src" -B "$src/build" >/dev/null
  cmake --build "$src/build" -j2 --target kontor-node
  bin=$src/build/gateway/kontor-node
fi
[ -x "$bin" ] || { echo "make-v1-fixture.sh: $bin is not executable" >&2; exit 1; }

work=$(mktemp -d /tmp/kontor-v1-fixture-XXXXXX)
data=$work/data
log=$work/node.log
# Snapshots every 5 events, so that alice's account (7 events) is restored from a v1 snapshot;
# no preallocation, so the journal stays a few hundred KiB.
"$bin" --data-dir "$data" --http-address 127.0.0.1 --http-port 0 --snapshot-every 5 \
  --journal-preallocate-mb 0 >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=""
for _ in $(seq 1 300); do # the node logs "ready: HTTP on 127.0.0.1:PORT" (bounded: 30 s)
  port=$(sed -n 's/.* ready: HTTP on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "node not ready" >&2; cat "$log" >&2; exit 1; }
base=http://127.0.0.1:$port
call() { # call METHOD PATH [BODY [IDEMPOTENCY-KEY]]: fails unless 2xx
  local args=(-sS -f -X "$1" "$base$2")
  [ $# -ge 3 ] && args+=(-d "$3")
  [ $# -ge 4 ] && args+=(-H "Idempotency-Key: $4")
  curl "${args[@]}" >/dev/null
}
call POST /accounts '{"id":"alice","owner":"Alice Adler","country":"DE","currency":"EUR","limit":1000}'
call POST /accounts/alice/transactions '{"txId":"a-d1","kind":"deposit","amount":700,"currency":"EUR"}'
call POST /accounts/alice/transactions '{"txId":"a-d2","kind":"deposit","amount":300,"currency":"EUR"}' key-a-d2
call POST /accounts/alice/transactions '{"txId":"a-p1","kind":"purchase","amount":500,"currency":"EUR"}'
call POST /accounts/alice/lock '{"reason":"card lost"}'
call POST /accounts/alice/transactions '{"txId":"a-d3","kind":"deposit","amount":50,"currency":"EUR"}'
call POST /accounts '{"id":"bob","owner":"Bob Berger","country":"AT","currency":"USD","limit":200}'
call POST /accounts/bob/transactions '{"txId":"b-d1","kind":"deposit","amount":1000,"currency":"USD"}'
call PUT /accounts/bob/address '{"street":"Unter den Linden 1","city":"Berlin","zip":"10117","country":"DE"}'
call POST /accounts/bob/transactions '{"txId":"b-p1","kind":"purchase","amount":1100,"currency":"USD"}'
call POST /accounts '{"id":"carol","owner":"Carol Clark","country":"AT","currency":"EUR","limit":0}'
call PUT /accounts/carol/limit '{"limit":2500}'
call POST /accounts/carol/phones '{"number":"+43 1 555 0101"}'

# The v1 node's answers, once its read model has every event (alice 7, bob 4, carol 3).
for _ in $(seq 1 300); do
  [ "$(curl -sf "$base/events?limit=1000" | jq '.events | length')" = 14 ] && break
  sleep 0.1
done
expected=$work/expected
mkdir -p "$expected"
curl -sSf "$base/events?limit=1000" >"$expected/feed.json"
curl -sSf "$base/stats/countries" >"$expected/stats.json"
for id in alice bob carol; do
  curl -sSf "$base/accounts/$id?consistent=true" >"$expected/$id.json"
  curl -sSf "$base/accounts/$id" >"$expected/$id.view.json"
  curl -sSf "$base/accounts/$id/events" >"$expected/$id.events.json"
  # The account as of the time of each of its events (the events of a lock share one time).
  jq -r '.[] | "\(.seq) \(.at)"' "$expected/$id.events.json" | while read -r seq at; do
    curl -sSf "$base/accounts/$id?asOf=$at" >"$expected/$id.asof.$seq.json"
  done
done
kill -TERM "$pid"
wait "$pid" || { echo "node did not exit 0" >&2; exit 1; }

# Everything but the hand-written README.md is replaced.
rm -rf "$out/data.tar.gz" "$out/expected" "$out/COMMIT"
mkdir -p "$out"
# The data dir as the v1 node left it (journal, its index, read models, node id), compressed.
tar -C "$work" -czf "$out/data.tar.gz" --sort=name --owner=0 --group=0 --numeric-owner data
cp -r "$expected" "$out/expected"
echo "$V1_COMMIT" >"$out/COMMIT"
echo "wrote $out ($(du -sh "$out" | cut -f1)) from $V1_COMMIT"
