//! `calico-bench openstack-resync [local|etcd]`: the driver's resync of
//! 3,000 ports in 100 security groups (upstream's measured case: 2.7 s
//! after its 44× speed-up), the datastore side of it: translation of every
//! port, group and subnet, one list per kind, and the writes. Three runs:
//! cold (everything created), warm (nothing changed, nothing written), and
//! repair (half the endpoints and a tenth of the policies gone). Neutron's
//! own database reads are not in these figures (see docs/benchmarks.md for
//! those, measured through `calico-resync`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use calico_datastore::{connect, Datastore, DatastoreConfig, EtcdConfig};
use calico_openstack::resync::{resync, PortWithExtras, Snapshot};
use calico_openstack::sync::Syncer;
use calico_openstack::{Config, PortExtras};
use serde_json::{json, Value};

const PORTS: usize = 3000;
const GROUPS: usize = 100;
const HOSTS: usize = 50;

fn group(i: usize) -> Value {
    let id = format!("5e1d0000-0000-4000-8000-{i:012}");
    json!({"id": id, "name": format!("sg-{i}"), "security_group_rules": [
        {"id": format!("{id}-a"), "security_group_id": id, "direction": "ingress",
         "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80},
        {"id": format!("{id}-b"), "security_group_id": id, "direction": "ingress",
         "ethertype": "IPv4", "remote_group_id": id},
        {"id": format!("{id}-c"), "security_group_id": id, "direction": "egress",
         "ethertype": "IPv4"},
        {"id": format!("{id}-d"), "security_group_id": id, "direction": "egress",
         "ethertype": "IPv6"},
    ]})
}

fn snapshot() -> Snapshot {
    let groups: Vec<Value> = (0..GROUPS).map(group).collect();
    let subnet = json!({"id": "sub-1", "network_id": "net-1", "cidr": "10.64.0.0/16",
                        "gateway_ip": "10.64.0.1", "enable_dhcp": true});
    let ports = (0..PORTS)
        .map(|i| {
            let id = format!("a0000000-0000-4000-8000-{i:012}");
            let sg = &groups[i % GROUPS];
            PortWithExtras {
                port: json!({
                    "id": id, "network_id": "net-1", "mac_address": "fa:16:3e:00:00:01",
                    "device_id": format!("b0000000-0000-4000-8000-{i:012}"),
                    "device_owner": "compute:nova", "project_id": "p",
                    "fixed_ips": [{"subnet_id": "sub-1",
                                   "ip_address": format!("10.64.{}.{}", i / 250, i % 250 + 2)}],
                    "security_groups": [sg["id"]],
                    "binding:host_id": format!("compute-{}", i % HOSTS),
                    "binding:vif_type": "tap",
                }),
                // As the shim sends them: groups as id and name, the
                // subnet by id.
                extras: PortExtras::from_value(&json!({
                    "security_groups": [{"id": sg["id"], "name": sg["name"]}],
                    "network": {"id": "net-1", "name": "tenant"},
                }))
                .expect("valid extras"),
                subnet_ids: vec!["sub-1".into()],
            }
        })
        .collect();
    Snapshot {
        ports,
        security_groups: groups,
        subnets: vec![subnet],
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let backends: Vec<&str> = if args.is_empty() {
        vec!["local", "etcd"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let snap = snapshot();
    println!(
        "resync: {PORTS} ports on {HOSTS} hosts, {GROUPS} security groups (4 rules each), 1 subnet"
    );
    println!(
        "{:<7} {:<7} {:>9} {:>8} {:>8} {:>8} {:>10}",
        "STORE", "RUN", "SECONDS", "CREATED", "UPDATED", "DELETED", "UNCHANGED"
    );
    for backend in backends {
        let dir = tempfile::tempdir()?;
        let _etcd;
        let cfg = match backend {
            "etcd" => {
                let e = calico_datastore::testing::EtcdServer::start();
                let cfg = DatastoreConfig::Etcd(EtcdConfig::new([e.endpoint()]));
                _etcd = e;
                cfg
            }
            _ => DatastoreConfig::Local {
                path: dir.path().join("calico.db"),
            },
        };
        let store: Arc<dyn Datastore> = Arc::from(connect(&cfg)?);
        let syncer = Syncer::new(store.clone(), Config::default());
        for run in ["cold", "warm", "repair"] {
            if run == "repair" {
                damage(store.as_ref())?;
            }
            let t = Instant::now();
            let r = resync(&syncer, &snap)?;
            let secs = t.elapsed().as_secs_f64();
            let total = |f: fn(&calico_openstack::resync::KindReport) -> usize| {
                f(&r.subnets) + f(&r.policies) + f(&r.endpoints) + f(&r.felix_config)
            };
            println!(
                "{:<7} {:<7} {:>9.3} {:>8} {:>8} {:>8} {:>10}",
                backend,
                run,
                secs,
                total(|k| k.created),
                total(|k| k.updated),
                total(|k| k.deleted),
                total(|k| k.unchanged)
            );
            assert_eq!(r.errors(), 0, "{r:?}");
        }
    }
    Ok(())
}

/// Half the endpoints and a tenth of the policies deleted behind the
/// driver's back.
fn damage(store: &dyn Datastore) -> Result<()> {
    let weps = store.list(&calico_openstack::keys::workload_endpoint_prefix(
        "openstack",
    ))?;
    for kv in weps.kvs.iter().step_by(2) {
        store.delete(&kv.key, None)?;
    }
    let pols = store.list(&calico_openstack::keys::security_group_policy_prefix(
        "openstack",
    ))?;
    for kv in pols.kvs.iter().step_by(10) {
        store.delete(&kv.key, None)?;
    }
    Ok(())
}
