#!/usr/bin/env bash
# Lists the Debian packages a kontor-node binary needs at run time: the owners (dpkg -S) of the
# shared libraries `ldd` resolves for it, one per line, sorted. The Dockerfile's runtime stage
# installs exactly these (tests/deploy checks it against the binary of the build).
#
# Left out: libc6, libgcc-s1 and libstdc++6. Every debian:12-slim image has them (libc6 is
# Essential; apt, which the image ships, depends on the other two), so installing them would
# only pin a second copy of the base image's decision. zlib1g is most likely there too (dpkg
# depends on it) but is listed: nothing in Debian promises that, and naming it costs nothing.
#
# Usage: scripts/runtime-libs.sh [BINARY]   (default: build/gateway/kontor-node)
set -euo pipefail

binary=${1:-build/gateway/kontor-node}
[ -x "$binary" ] || { echo "runtime-libs: no executable $binary (build first)" >&2; exit 1; }

in_base_image=(libc6 libgcc-s1 libstdc++6)

# Library paths: "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x…)" and the loader's line.
libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
if grep -q 'not found' <(ldd "$binary"); then
  echo "runtime-libs: ldd finds no library for: $(ldd "$binary" | grep 'not found')" >&2
  exit 1
fi

packages=()
for lib in $libs; do
  # Debian 12 merged /lib into /usr/lib; dpkg knows each file under the path its package used.
  owner=""
  for path in "$lib" "$(readlink -f "$lib")" "/usr$lib" "${lib#/usr}"; do
    owner=$(dpkg -S "$path" 2>/dev/null | head -n1 | cut -d: -f1) && [ -n "$owner" ] && break
  done
  [ -n "$owner" ] || { echo "runtime-libs: no Debian package owns $lib" >&2; exit 1; }
  packages+=("$owner")
done

for p in "${packages[@]}"; do
  skip=0
  for base in "${in_base_image[@]}"; do [ "$p" = "$base" ] && skip=1; done
  if [ $skip -eq 0 ]; then echo "$p"; fi
done | sort -u
