#!/usr/bin/env bash
# Proves the README's first steps the way a newcomer meets them: makes a fresh
# minimal Debian 12 root with debootstrap, puts a fresh clone of HEAD in it, and
# runs scripts/setup.sh and a build of every binary and every test target inside
# it; then, with CI=true so that a missing tool fails instead of skipping, the
# tests that use the packages: the datastore's (etcd, etcdctl, openssl) and the
# dataplane's kernel tests (ip, bridge, ping, nft, sysctl) in namespaces of
# their own; and `calico-lab openstack` (neutron-server, MariaDB, Keystone,
# RabbitMQ, the openstack CLI and our driver, all from `setup.sh --openstack`).
# Root only. Each step
# is timed. The root, its mounts and anything
# still running in it are removed on exit, also on failure.
#
# Rust itself comes from the host (its sysroot bind-mounted read-only), as a
# newcomer installs it with rustup and not from Debian. The crates come from
# the host's cargo cache when it has one (crates.io is reached otherwise).
#
#   FRESH_MIRROR=URL   Debian mirror (default: the host's first Debian source)
#   FRESH_KEEP=1       keep the root (its path is printed) instead of removing it
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
start=$SECONDS
[ "$(id -u)" = 0 ] || { echo "check-fresh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }

say() { printf 'check-fresh: [%4ds] %s\n' $((SECONDS - start)) "$*"; }

# The host's Debian mirror: deb822 sources first, then the one-line format.
host_mirror() {
  local found
  found=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    awk '/^URIs:|^deb / { print $2 }' | grep -m1 '/debian/\?$' || true)
  echo "${found:-http://deb.debian.org/debian}"
}
mirror=${FRESH_MIRROR:-$(host_mirror)}

command -v debootstrap >/dev/null || {
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
}

work=$(mktemp -d /var/tmp/calico-fresh.XXXXXX)
root=$work/root

# Ends what still runs in the root (by PID), unmounts everything under it,
# deepest first, and deletes it only if nothing is mounted there any more: a
# leftover bind mount of the host's toolchain must never be deleted through it.
cleanup() {
  local p m
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ]; then
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
  for m in $(findmnt -rn -o TARGET | grep "^$root\(/\|$\)" | sort -r || true); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if [ "${FRESH_KEEP:-0}" = 1 ]; then
    echo "check-fresh: kept $root"
  elif findmnt -rn -o TARGET | grep -q "^$root\(/\|$\)"; then
    echo "check-fresh: still mounted under $root; not removing it" >&2
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT

mount_in() { # mount_in TARGET MOUNT-ARGS...
  mkdir -p "$root$1"
  mount "${@:2}" "$root$1"
}

# inside CMD...: runs CMD in the root's clone, with a newcomer's environment.
inside() {
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/root/.cargo CARGO_TERM_PROGRESS_WHEN=never "$@"
}

say "debootstrap bookworm (minbase) from $mirror"
# A mirror's passing hiccup should not fail the check: three tries.
for try in 1 2 3; do
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 && break
  tail -5 "$work/debootstrap.log" >&2
  [ "$try" = 3 ] && exit 1
  say "debootstrap failed; trying again"
  rm -rf --one-file-system "$root"
  sleep 5
done
# Packages' services (etcd) must not start in the chroot, on the host's network.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"

say "fresh clone of $(git rev-parse --short HEAD)"
git clone -q --no-hardlinks "$repo" "$root/src/calico-rs"

# The root must be a mount point of its own: `ip netns exec` makes "/" a slave.
mount --bind "$root" "$root"
mount_in /proc -t proc proc
mount_in /sys -t sysfs sysfs
mount_in /dev/pts -t devpts -o newinstance,ptmxmode=0666 devpts
mount_in /opt/rust --bind -o ro "$(rustc --print sysroot)"
cargo_home=${CARGO_HOME:-$HOME/.cargo}
if [ -d "$cargo_home/registry" ]; then
  mkdir -p "$root/root/.cargo"
  cp -a "$cargo_home/registry" "$root/root/.cargo/"
fi

say "setup.sh --openstack"
inside bash -c 'cd /src/calico-rs && bash scripts/setup.sh --openstack'
say "build: every binary"
inside bash -c 'cd /src/calico-rs && cargo build -q --workspace --bins --locked'
say "build: every test target"
inside bash -c 'cd /src/calico-rs && cargo test -q --workspace --no-run --locked'
say "tests: datastore and dataplane, CI=true"
inside bash -c 'cd /src/calico-rs && CI=true cargo test -q --locked -p calico-datastore -p calico-dataplane'
say "OpenStack: calico-lab openstack (neutron-server with the driver on RabbitMQ, VMs on two hosts)"
inside bash -c 'cd /src/calico-rs && target/debug/calico-lab --dir /tmp/fresh-lab --prefix cf- openstack --message-bus rabbitmq >/tmp/fresh-openstack.log 2>&1' ||
  { tail -40 "$root/tmp/fresh-openstack.log" >&2; exit 1; }
grep -q 'every probe agreed' "$root/tmp/fresh-openstack.log"
grep -q 'accepting AMQP connection' "$root/tmp/fresh-lab/openstack/log/rabbit@localhost.log"
say "ok: setup.sh installs all the build, these tests and the OpenStack lab need"
