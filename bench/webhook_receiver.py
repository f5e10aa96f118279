#!/usr/bin/env python3
"""The thank-you webhook's target for bench/policy_bench.sh, and the lag report over what it saw.

  webhook_receiver.py serve FILE
      Listens on 127.0.0.1 (a free port, printed as the first line on stdout), answers every
      POST with 200 at once and appends one line per delivery to FILE:
      "<arrival, epoch ms with µs> <Idempotency-Key> <the body's at, epoch ms>".
  webhook_receiver.py report FILE NODE_URL MIN_AMOUNT SINCE_MS
      Reads FILE and the node's event feed (GET /events, every page) and prints the policy lag
      (arrival - the deposit's `at`) p50/p99/max, and the deliveries next to the qualifying
      deposits (MoneyDeposited with amount >= MIN_AMOUNT), both counted from SINCE_MS on.
"""
import http.client
import http.server
import json
import math
import os
import signal
import sys
import time
import urllib.parse
from datetime import datetime


def serve(path):
    out = open(path, "a", buffering=1)  # one line per delivery, written at once

    class handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as webhook receivers behind any proxy do

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrival = time.time_ns() / 1e6
            key = self.headers.get("Idempotency-Key", "-")
            try:
                at = json.loads(body)["at"]
            except (ValueError, KeyError):
                at = -1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            out.write(f"{arrival:.3f} {key} {at}\n")

        def log_message(self, *args):
            pass

    # A Ctrl-C (bash starts background jobs with SIGINT ignored) ends the receiver with 130, so
    # the bench, which may not see the SIGINT itself (wrk handles it and exits 0), knows.
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    # One request at a time: the policy delivers one at a time too.
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]  # nearest rank


def rfc3339_ms(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def report(path, node_url, min_amount, since_ms):
    deliveries = {}  # key -> (arrival, at) of the first delivery
    duplicates = 0
    with open(path) as f:
        for line in f:
            arrival, key, at = line.split()
            if key in deliveries:
                duplicates += 1
                continue
            deliveries[key] = (float(arrival), int(at))
    measured = {k: v for k, v in deliveries.items() if v[1] >= since_ms}

    # Every qualifying deposit from SINCE_MS on, from the node's feed.
    u = urllib.parse.urlsplit(node_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    qualifying = set()
    query = "limit=1000"
    while True:
        conn.request("GET", "/events?" + query)
        page = json.loads(conn.getresponse().read())
        for e in page["events"]:
            if e["type"] == "MoneyDeposited" and int(e["data"]["amount"]) >= min_amount \
                    and rfc3339_ms(e["at"]) >= since_ms:
                qualifying.add(f'{e["accountId"]}:{e["seq"]}')
        if not page["events"]:
            break
        query = "limit=1000&after=" + urllib.parse.quote(page["next"])
    conn.close()

    lags = sorted(arrival - at for arrival, at in measured.values())
    missing = len(qualifying - measured.keys())
    unexpected = len(measured.keys() - qualifying)
    print(f"deliveries {len(measured)} of {len(qualifying)} qualifying deposits (amount >= {min_amount}); "
          f"missing {missing}, not qualifying {unexpected}, duplicate deliveries {duplicates}")
    if lags:
        print(f"policy lag (receiver arrival - event at) over {len(lags)} deliveries: "
              f"p50 {percentile(lags, 0.5):.1f} ms, p99 {percentile(lags, 0.99):.1f} ms, "
              f"max {lags[-1]:.1f} ms (goal p99 <= 100 ms)")
        print(f"LAG {percentile(lags, 0.5):.1f} {percentile(lags, 0.99):.1f} {lags[-1]:.1f} "
              f"{len(measured)} {len(qualifying)} {missing}")
    else:
        print("no deliveries")
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif len(sys.argv) == 6 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
