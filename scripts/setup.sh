#!/usr/bin/env bash
# Installs the Debian 12 packages Kontor builds and tests with. Idempotent: prints
# nothing and touches nothing when every package is already present.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config git
  libcaf-dev                                  # CAF 0.17.6: actors (core) and remote actors (io)
  libboost1.81-dev libboost-json1.81-dev      # Beast/Asio (headers) and Boost.JSON
  libboost-program-options1.81-dev            # config file + KONTOR_* env + flags with one parser
  liblmdb-dev lmdb-utils                      # the embedded journal
  libprotobuf-dev protobuf-compiler           # events and snapshots on disk
  catch2                                      # unit tests (v2, prebuilt main)
  wrk curl procps                             # load generator for bench/, probes in scripts
  libssl-dev openssl                          # HTTPS (Asio SSL); openssl makes the tests' certificates
  prometheus                                  # promtool: the /metrics lint test
  python3-yaml                                # the deploy tests turn rendered YAML into JSON
  chromium                                    # the dashboard test renders GET /dashboard headless
)
# kubectl renders k8s/ in the deploy tests: Debian's kubernetes-client (kubectl 1.20, kustomize
# v2.0.3, what k8s/ is written for), unless a kubectl is already installed — e.g. Google's
# `kubectl` package, which owns the same path (installing both conflicts); k8s/ renders with its
# kustomize v5 too (deprecation warnings only).
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Only promtool is wanted from prometheus: its postinst would start a Prometheus server (and fail
# the install where no init system runs). A policy-rc.d that refuses every start prevents that.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
