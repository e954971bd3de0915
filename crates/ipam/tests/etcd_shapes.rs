//! Against a real etcd, read back with `etcdctl`: IPAM keys and JSON values
//! have upstream's shapes (calico-core.md §2; lcg `lib/backend/model/block.go`,
//! `block_affinity.go`, `ipam_handle.go`, `ipam_config.go`).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use calico_ipam::tunnel::ensure_vxlan_tunnel_address;
use calico_ipam::{AutoAssignArgs, IpamConfig};
use common::{vxlan, Fixture};
use serde_json::Value;

/// `etcdctl get --prefix` as (key, JSON value) pairs.
fn etcdctl_get_prefix(f: &Fixture, prefix: &str) -> Vec<(String, Value)> {
    let etcd = f.etcd.as_ref().unwrap();
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint(), "get", "--prefix", prefix])
        .output()
        .expect("etcdctl is installed with etcd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|kv| {
            (
                kv[0].to_string(),
                serde_json::from_str(kv[1]).unwrap_or_else(|e| panic!("{}: {e}", kv[1])),
            )
        })
        .collect()
}

fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn ipam_keys_and_json_as_upstream() {
    let f = Fixture::etcd();
    f.pool("v4", "10.30.0.0/24", vxlan);
    f.pool("v6", "fd00:30::/120", |_| {});
    f.node("node-1", &[]);
    f.ipam
        .set_config(IpamConfig {
            strict_affinity: true,
            ..IpamConfig::default()
        })
        .unwrap();
    f.ipam
        .auto_assign(&AutoAssignArgs {
            num4: 2,
            num6: 1,
            handle_id: Some("k8s-pod-network.abc".into()),
            attrs: BTreeMap::from([
                ("node".to_string(), "node-1".to_string()),
                ("namespace".to_string(), "default".to_string()),
                ("pod".to_string(), "web-1".to_string()),
            ]),
            hostname: "node-1".into(),
            ..Default::default()
        })
        .unwrap()
        .complete()
        .unwrap();
    let tunnel = ensure_vxlan_tunnel_address(&f.client, &f.ipam, "node-1")
        .unwrap()
        .unwrap();

    let kvs = etcdctl_get_prefix(&f, "/calico/ipam/v2/");
    let by_key: BTreeMap<&str, &Value> = kvs.iter().map(|(k, v)| (k.as_str(), v)).collect();

    // Config: Go's omitempty JSON.
    assert_eq!(
        by_key["/calico/ipam/v2/config"],
        &serde_json::json!({"strict_affinity": true, "auto_allocate_blocks": true})
    );

    // Blocks: one v4, one v6, keyed by CIDR with '/' -> '-'.
    let blocks: Vec<&(String, Value)> = kvs
        .iter()
        .filter(|(k, _)| k.contains("/assignment/"))
        .collect();
    assert_eq!(
        blocks.len(),
        2,
        "{:?}",
        kvs.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    for (k, b) in &blocks {
        let cidr = b["cidr"].as_str().unwrap();
        let (ver, n) = if cidr.contains(':') { (6, 64) } else { (4, 64) };
        assert_eq!(
            *k,
            format!(
                "/calico/ipam/v2/assignment/ipv{ver}/block/{}",
                cidr.replace('/', "-")
            )
        );
        assert_eq!(
            keys_of(b),
            [
                "cidr",
                "affinity",
                "allocations",
                "unallocated",
                "attributes",
                "sequenceNumber",
                "sequenceNumberForAllocation",
                "deleted"
            ]
        );
        assert_eq!(b["affinity"], "host:node-1");
        assert_eq!(b["deleted"], false);
        assert!(b["sequenceNumber"].as_u64().unwrap() > 1_600_000_000_000_000_000);
        let allocs = b["allocations"].as_array().unwrap();
        assert_eq!(allocs.len(), n);
        assert!(allocs.iter().all(|a| a.is_null() || a.is_u64()));
        let used = allocs.iter().filter(|a| !a.is_null()).count();
        assert_eq!(b["unallocated"].as_array().unwrap().len(), n - used);
        assert!(b["unallocated"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_u64));
        for a in b["attributes"].as_array().unwrap() {
            assert_eq!(keys_of(a), ["handle_id", "secondary"]);
            assert!(a["handle_id"].is_string() && a["secondary"].is_object());
        }
        let seqs = b["sequenceNumberForAllocation"].as_object().unwrap();
        assert_eq!(seqs.len(), used);
        for (ord, _) in seqs {
            assert!(!allocs[ord.parse::<usize>().unwrap()].is_null());
        }
    }
    let v4 = blocks.iter().find(|(k, _)| k.contains("/ipv4/")).unwrap();
    assert_eq!(
        v4.1["attributes"].as_array().unwrap().len(),
        2,
        "workload and tunnel attributes"
    );
    let tunnel_attr = v4.1["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["handle_id"] == "vxlan-tunnel-addr-node-1")
        .unwrap();
    assert_eq!(
        tunnel_attr["secondary"],
        serde_json::json!({"node": "node-1", "type": "vxlanTunnelAddress"})
    );

    // Affinities: confirmed, one per block.
    let affs: Vec<&(String, Value)> = kvs
        .iter()
        .filter(|(k, _)| k.starts_with("/calico/ipam/v2/host/"))
        .collect();
    assert_eq!(affs.len(), 2);
    for (k, a) in &affs {
        assert!(k.starts_with("/calico/ipam/v2/host/node-1/ipv"), "{k}");
        assert!(k.contains("/block/"));
        assert_eq!(
            *a,
            serde_json::json!({"state": "confirmed", "deleted": false})
        );
        let cidr = k.rsplit('/').next().unwrap();
        assert!(blocks
            .iter()
            .any(|(bk, _)| bk.ends_with(&format!("/block/{cidr}"))));
    }

    // Handles: addresses per block CIDR.
    let h = by_key["/calico/ipam/v2/handle/k8s-pod-network.abc"];
    assert_eq!(keys_of(h), ["block", "deleted"]);
    let counts = h["block"].as_object().unwrap();
    assert_eq!(counts.len(), 2);
    assert_eq!(counts.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 3);
    assert!(
        counts.keys().all(|c| c.contains('/')),
        "handle blocks are CIDRs: {counts:?}"
    );
    let th = by_key["/calico/ipam/v2/handle/vxlan-tunnel-addr-node-1"];
    assert_eq!(th["block"].as_object().unwrap().values().next().unwrap(), 1);
    assert_eq!(th["deleted"], false);

    // The tunnel address is recorded on the Node resource.
    let nodes = etcdctl_get_prefix(&f, "/calico/resources/v3/projectcalico.org/nodes/node-1");
    assert_eq!(
        nodes[0].1["spec"]["ipv4VXLANTunnelAddr"],
        tunnel.to_string()
    );

    // Releasing everything and the host's affinities leaves only the config.
    f.ipam.release_by_handle("k8s-pod-network.abc").unwrap();
    f.ipam
        .release_by_handle("vxlan-tunnel-addr-node-1")
        .unwrap();
    f.ipam.release_host_affinities("node-1", true).unwrap();
    let left: Vec<String> = etcdctl_get_prefix(&f, "/calico/ipam/v2/")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, ["/calico/ipam/v2/config"]);
}
