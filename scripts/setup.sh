#!/usr/bin/env bash
# Installs the system packages calico-rs builds and tests with (Debian 12, as root).
# Idempotent: packages already present are left alone. Every package is named, since
# `--no-install-recommends` brings no Recommends (gcc's libc6-dev, protoc's .proto files).
# scripts/check-fresh.sh proves this list in a fresh Debian root.
#
#   bash scripts/setup.sh               the build, the tests but OpenStack's, the demo
#   bash scripts/setup.sh --openstack   also Debian's neutron-server (Zed), MariaDB and the
#                                       openstack CLI, and our ML2 driver `calico` (openstack/)
#                                       installed into the Python neutron-server runs
set -euo pipefail
cd "$(dirname "$0")/.."
openstack=0
for arg in "$@"; do
  case "$arg" in
    --openstack) openstack=1 ;;
    *) echo "setup: unknown argument $arg (only --openstack)" >&2; exit 2 ;;
  esac
done

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
  dnsmasq-base               # dnsmasq, which calico-dhcp-agent runs (one per Neutron network)
  isc-dhcp-client            # dhclient, the DHCP client of the lab's VMs and the DHCP agent's tests
  # --- the benchmarks and by hand
  iperf3                     # calico-bench pps (64-byte UDP packets per second)
  iptables ipset conntrack   # comparing with an iptables+ipset rendering; conntrack tables by hand
  sqlite3                    # to inspect the embedded store by hand
)
if [ "$openstack" = 1 ]; then
  packages+=(
    # --- OpenStack (the ML2 driver's end-to-end tests, `calico-lab openstack`)
    neutron-server neutron-common       # Debian's neutron (Zed): neutron-common has the monolithic neutron-server and ML2
    python3-openstackclient             # the `openstack` CLI
    python3-keystone                    # Keystone (keystone-manage, its WSGI app) for the lab's controller
    rabbitmq-server                     # the article's message bus (`calico-lab openstack-up --message-bus rabbitmq`)
    mariadb-server mariadb-client       # Neutron's database (SQLite cannot run its migrations)
    python3-pip python3-setuptools      # installing the driver package into /usr/bin/python3
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Without systemd, the packages' init scripts would start MariaDB, RabbitMQ and neutron at once:
  # deny that while installing (a policy-rc.d already in place is left as it is).
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
if [ "$openstack" = 1 ]; then
  # The driver, into the Python neutron-server runs (#!/usr/bin/python3), from a copy so
  # that the build leaves nothing in the source tree. It registers `calico` in
  # neutron.ml2.mechanism_drivers and the `calico-resync` command.
  copy=$(mktemp -d)
  cp -r openstack/setup.py openstack/networking_calico_rs "$copy/"
  /usr/bin/python3 -m pip install -q --no-index --no-build-isolation --no-deps \
    --break-system-packages --root-user-action=ignore "$copy" >/dev/null
  rm -rf "$copy"
  echo "setup: driver networking-calico-rs installed (mechanism driver calico, calico-resync)"
fi
# The Debian etcd package starts a system etcd on 2379; the tests start their
# own on free ports and do not need it. Likewise bird2 and frr may start a system BIRD or
# FRR (where systemd runs); the tests only use birdc/vtysh, and daemons they start in namespaces.
command -v cargo >/dev/null || {
  echo "setup: cargo is required: install Rust 1.85 or newer with rustup (Debian's rustc is too old)" >&2
  exit 1
}
echo "setup: ok"
