#!/usr/bin/env bash
# The main job: the lab demo. Two simulated compute hosts (network
# namespaces) each run calico-node; the article's resources are applied
# verbatim with calicoctl; workloads in production, staging and frontend get
# addresses from IPAM; a reachability matrix shows what the kernel enforces
# and which policy decided, before and after fixing the article's ordering
# trap. Everything is torn down at the end. Needs root.
#   DATASTORE=etcd bash scripts/demo.sh   # the same with etcd
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --workspace --bins
exec target/release/calico-lab demo --datastore "${DATASTORE:-local}" "$@"
