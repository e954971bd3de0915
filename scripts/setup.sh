#!/usr/bin/env bash
# Installs the system packages calico-rs builds and tests with (Debian, as root).
# Idempotent: packages already present are left alone.
set -euo pipefail

packages=(
  etcd-server etcd-client   # the multi-host datastore, and etcdctl for tests
  protobuf-compiler          # etcd-client's build uses protoc on some versions
  iproute2 nftables          # the dataplane and its tests
  iputils-ping               # traffic in the end-to-end tests
  sqlite3                    # to inspect the embedded store by hand
  iperf3                     # calico-bench pps (64-byte UDP packets per second)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian etcd package starts a system etcd on 2379; the tests start their
# own on free ports and do not need it.
command -v cargo >/dev/null || { echo "setup: cargo (Rust toolchain) is required" >&2; exit 1; }
echo "setup: ok"
