#!/usr/bin/env bash
# The main job until the agent exists: an embedded datastore, every YAML
# document of the article applied with calicoctl, and read back as tables.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p calicoctl
ctl=target/release/calicoctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DATASTORE_TYPE=local DATASTORE_PATH="$work/calico.db"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "Embedded datastore: $DATASTORE_PATH"
step "$ctl" version
step "$ctl" apply -f tests/fixtures/article/
step "$ctl" get bgppeers
step "$ctl" get ippools -o wide
step "$ctl" get globalnetworkpolicies -o wide
step "$ctl" get networkpolicies -A -o wide
step "$ctl" get networkpolicies -n production web-db-policy -o yaml
step "$ctl" get policies -A -l "projectcalico.org/namespace == 'x'" || true
step "$ctl" label ippool default-pool tier=gold
step "$ctl" get ippools -l "tier == 'gold'"

echo
echo "The article's YAML as published (indentation lost) is refused with a hint:"
step "$ctl" apply -f tests/fixtures/flattened/flattened-bgp-peer.yaml || true
