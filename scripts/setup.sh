#!/usr/bin/env bash
# Installs the system packages calico-rs builds and tests with (Debian 12, as root).
# Idempotent: packages already present are left alone. Every package is named, since
# `--no-install-recommends` brings no Recommends (gcc's libc6-dev, protoc's .proto files).
# scripts/check-fresh.sh proves this list in a fresh Debian root.
set -euo pipefail

packages=(
  # --- the build
  gcc libc6-dev              # the linker, and C code in ring and the bundled SQLite
  protobuf-compiler          # protoc, for etcd-client's generated code
  libprotobuf-dev            # google/protobuf/*.proto that etcd-client's protos import
  ca-certificates            # cargo fetching crates over HTTPS
  git                        # `calicoctl version` records the commit
  # --- the tests
  etcd-server etcd-client    # the multi-host datastore, and etcdctl to read its keys back
  openssl                    # certificates for the etcd TLS tests
  iproute2 nftables          # the dataplane and its kernel tests (ip, bridge, nft)
  iputils-ping               # traffic in the kernel and end-to-end tests
  procps                     # kill and sysctl, used by the lab and the kernel tests
  bird2                      # birdc for the control-socket tests; BIRD as the ToR and interop peer
  frr                        # bgpd+zebra (and vtysh) as the second interop peer (crates/bgp/tests/interop_frr.rs)
  # --- the benchmarks and by hand
  iperf3                     # calico-bench pps (64-byte UDP packets per second)
  iptables ipset conntrack   # comparing with an iptables+ipset rendering; conntrack tables by hand
  sqlite3                    # to inspect the embedded store by hand
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
# own on free ports and do not need it. Likewise bird2 and frr may start a system BIRD or
# FRR (where systemd runs); the tests only use birdc/vtysh, and daemons they start in namespaces.
command -v cargo >/dev/null || {
  echo "setup: cargo is required: install Rust 1.85 or newer with rustup (Debian's rustc is too old)" >&2
  exit 1
}
echo "setup: ok"
