//! The driver's datastore writes over a real store (the embedded one):
//! compare-and-swap with retries, metadata kept across updates, endpoints
//! following their port between hosts, and resync restoring exactly what
//! Neutron has while leaving everything else alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use calico_datastore::{
    Datastore, KeyValue, LeaseId, ListResult, LocalStore, Op, Result, Revision, Watch,
};
use calico_openstack::resync::{resync, PortWithExtras, Snapshot};
use calico_openstack::sync::{Outcome, Syncer};
use calico_openstack::{keys, Config, PortExtras};
use serde_json::{json, Value};

fn store() -> (tempfile::TempDir, Arc<dyn Datastore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(dir.path().join("calico.db")).unwrap();
    (dir, Arc::new(s))
}

fn port(id: &str, host: &str, ip: &str) -> Value {
    json!({
        "id": id, "network_id": "net-1", "mac_address": "fa:16:3e:00:00:01",
        "device_id": format!("vm-{id}"), "device_owner": "compute:nova",
        "fixed_ips": [{"subnet_id": "sub-1", "ip_address": ip}],
        "security_groups": ["sg-web"], "binding:host_id": host, "binding:vif_type": "tap",
        "status": "DOWN",
    })
}

fn group(id: &str, port: u16) -> Value {
    json!({"id": id, "name": id, "security_group_rules": [
        {"id": format!("{id}-r"), "security_group_id": id, "direction": "ingress",
         "ethertype": "IPv4", "protocol": "tcp", "port_range_min": port, "port_range_max": port}
    ]})
}

fn extras() -> PortExtras {
    PortExtras::from_value(&json!({
        "subnets": [{"id": "sub-1", "network_id": "net-1", "cidr": "10.65.0.0/24",
                     "gateway_ip": "10.65.0.1", "enable_dhcp": true}],
        "security_groups": [group("sg-web", 80)],
    }))
    .unwrap()
}

fn wep_key(host: &str, id: &str) -> String {
    let name = calico_openstack::names::endpoint_name(host, &format!("vm-{id}"), id);
    keys::workload_endpoint_key("openstack", &name)
}

fn value(s: &dyn Datastore, key: &str) -> Value {
    serde_json::from_slice(&s.get(key).unwrap().expect(key).value).unwrap()
}

#[test]
fn an_endpoint_follows_its_port_and_keeps_its_identity() {
    let (_d, s) = store();
    let sync = Syncer::new(s.clone(), Config::default());
    let p = port("p1", "h1", "10.65.0.5");
    let w = sync.sync_port(None, &p, &extras()).unwrap();
    let outcomes: Vec<_> = w.iter().map(|w| (w.key.as_str(), w.outcome)).collect();
    assert!(outcomes.contains(&(wep_key("h1", "p1").as_str(), Outcome::Created)));
    assert!(
        w.iter()
            .any(|w| w.key.ends_with("ossg.default.sg-web") && w.outcome == Outcome::Created),
        "the group's policy is written before its first member: {w:?}"
    );
    let first = value(s.as_ref(), &wep_key("h1", "p1"));
    assert_eq!(first["spec"]["ipNetworks"], json!(["10.65.0.5/32"]));
    assert_eq!(first["spec"]["ipv4Gateway"], "10.65.0.1");

    // The same port again writes nothing.
    let again = sync.sync_port(Some(&p), &p, &extras()).unwrap();
    assert!(
        again.iter().all(|w| w.outcome == Outcome::Unchanged),
        "{again:?}"
    );

    // A changed address updates in place: uid and creation time are kept.
    let p2 = port("p1", "h1", "10.65.0.6");
    sync.sync_port(Some(&p), &p2, &extras()).unwrap();
    let second = value(s.as_ref(), &wep_key("h1", "p1"));
    assert_eq!(second["spec"]["ipNetworks"], json!(["10.65.0.6/32"]));
    assert_eq!(second["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(
        second["metadata"]["creationTimestamp"],
        first["metadata"]["creationTimestamp"]
    );

    // Moved to h2: written there, removed from h1.
    let p3 = port("p1", "h2", "10.65.0.6");
    let w = sync.sync_port(Some(&p2), &p3, &extras()).unwrap();
    assert!(w
        .iter()
        .any(|w| w.key == wep_key("h2", "p1") && w.outcome == Outcome::Created));
    assert!(w
        .iter()
        .any(|w| w.key == wep_key("h1", "p1") && w.outcome == Outcome::Deleted));
    assert!(s.get(&wep_key("h1", "p1")).unwrap().is_none());

    // Unbound: gone. Deleted afterwards: nothing left to do.
    let mut unbound = p3.clone();
    unbound["binding:vif_type"] = json!("unbound");
    sync.sync_port(Some(&p3), &unbound, &extras()).unwrap();
    assert!(s.get(&wep_key("h2", "p1")).unwrap().is_none());
    assert!(sync.delete_port(&unbound).unwrap().is_empty());
}

#[test]
fn a_port_that_cannot_be_expressed_writes_nothing() {
    let (_d, s) = store();
    let sync = Syncer::new(s.clone(), Config::default());
    let p = port("p1", "h1", "10.65.0.5");
    sync.sync_port(None, &p, &extras()).unwrap();
    let before = s.get(&wep_key("h1", "p1")).unwrap().unwrap();
    let mut bad = p.clone();
    bad["allowed_address_pairs"] = json!([{"ip_address": "10.66.0.0/24"}]);
    let err = sync.sync_port(Some(&p), &bad, &extras()).unwrap_err();
    assert!(err.to_string().contains("port p1"), "{err}");
    assert_eq!(s.get(&wep_key("h1", "p1")).unwrap().unwrap(), before);
}

/// A store that lets another writer change a key between our read and our
/// conditional write, once.
struct Racing {
    inner: Arc<dyn Datastore>,
    raced: AtomicBool,
}

impl Datastore for Racing {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key)
    }
    fn list(&self, prefix: &str) -> Result<ListResult> {
        self.inner.list(prefix)
    }
    fn create(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision> {
        self.inner.create(key, value, lease)
    }
    fn update(
        &self,
        key: &str,
        value: &[u8],
        rev: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            let other = self.inner.get(key)?.unwrap().value;
            self.inner.put(key, &other, None)?;
        }
        self.inner.update(key, value, rev, lease)
    }
    fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision> {
        self.inner.put(key, value, lease)
    }
    fn delete(&self, key: &str, rev: Option<Revision>) -> Result<KeyValue> {
        self.inner.delete(key, rev)
    }
    fn txn(&self, ops: &[Op]) -> Result<Revision> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            self.inner
                .put(ops[0].key(), br#"{"written":"by someone else"}"#, None)?;
        }
        self.inner.txn(ops)
    }
    fn max_txn_ops(&self) -> usize {
        self.inner.max_txn_ops()
    }
    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        self.inner.grant_lease(ttl)
    }
    fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.inner.keep_alive(lease)
    }
    fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.inner.revoke_lease(lease)
    }
    fn watch(&self, prefix: &str, start: Revision) -> Result<Watch> {
        self.inner.watch(prefix, start)
    }
    fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision()
    }
    fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision)
    }
}

#[test]
fn a_write_that_loses_a_race_reads_again_and_wins() {
    let (_d, s) = store();
    let sync = Syncer::new(s.clone(), Config::default());
    let p = port("p1", "h1", "10.65.0.5");
    sync.sync_port(None, &p, &extras()).unwrap();
    let racing: Arc<dyn Datastore> = Arc::new(Racing {
        inner: s.clone(),
        raced: AtomicBool::new(false),
    });
    let sync = Syncer::new(racing, Config::default());
    let p2 = port("p1", "h1", "10.65.0.9");
    let w = sync.sync_port(Some(&p), &p2, &extras()).unwrap();
    assert!(w
        .iter()
        .any(|w| w.key == wep_key("h1", "p1") && w.outcome == Outcome::Updated));
    assert_eq!(
        value(s.as_ref(), &wep_key("h1", "p1"))["spec"]["ipNetworks"],
        json!(["10.65.0.9/32"])
    );
}

#[test]
fn a_resync_batch_that_loses_a_race_is_redone_key_by_key() {
    let (_d, s) = store();
    let racing: Arc<dyn Datastore> = Arc::new(Racing {
        inner: s.clone(),
        raced: AtomicBool::new(false),
    });
    let sync = Syncer::new(racing, Config::default());
    let report = resync(&sync, &snapshot(6)).unwrap();
    assert_eq!(report.errors(), 0);
    for i in 0..6 {
        let v = value(s.as_ref(), &wep_key(["h1", "h2"][i % 2], &format!("p{i}")));
        assert_eq!(v["spec"]["endpoint"], format!("p{i}"));
    }
    let sub = keys::subnet_key(&calico_openstack::Region::none(), "sub-1");
    assert_eq!(
        value(s.as_ref(), &sub)["cidr"],
        "10.65.0.0/24",
        "the raced key was rewritten"
    );
    let again = resync(&sync, &snapshot(6)).unwrap();
    assert_eq!(
        again.subnets.unchanged + again.endpoints.unchanged,
        7,
        "{again:?}"
    );
}

fn snapshot(n: usize) -> Snapshot {
    let ports = (0..n)
        .map(|i| PortWithExtras {
            port: port(
                &format!("p{i}"),
                ["h1", "h2"][i % 2],
                &format!("10.65.0.{}", 10 + i),
            ),
            extras: extras(),
            subnet_ids: vec![],
        })
        .collect();
    Snapshot {
        ports,
        security_groups: vec![group("sg-web", 80), group("sg-db", 5432)],
        subnets: vec![
            json!({"id": "sub-1", "network_id": "net-1", "cidr": "10.65.0.0/24",
                             "gateway_ip": "10.65.0.1", "enable_dhcp": true}),
        ],
    }
}

/// The shim sends each port's subnets by id (`subnet_ids`), found in the
/// snapshot's subnets: the endpoints are the same as with copies.
#[test]
fn subnets_by_id_give_the_same_endpoints_as_copies() {
    let (_d, s) = store();
    let sync = Syncer::new(s.clone(), Config::default());
    let copies = snapshot(4);
    assert_eq!(resync(&sync, &copies).unwrap().endpoints.created, 4);
    let mut by_id = copies.clone();
    for p in &mut by_id.ports {
        p.extras.subnets.clear();
        p.subnet_ids = vec!["sub-1".into(), "unknown".into()];
    }
    let again = resync(&sync, &by_id).unwrap();
    assert_eq!(
        (again.endpoints.unchanged, again.endpoints.updated),
        (4, 0),
        "{again:?}"
    );
    // Without the subnet (neither copied nor known), the gateway is gone.
    for p in &mut by_id.ports {
        p.subnet_ids.clear();
    }
    assert_eq!(resync(&sync, &by_id).unwrap().endpoints.updated, 4);
}

#[test]
fn resync_restores_what_neutron_has_and_touches_nothing_else() {
    let (_d, s) = store();
    let sync = Syncer::new(s.clone(), Config::default());
    let snap = snapshot(10);
    let first = resync(&sync, &snap).unwrap();
    assert_eq!(
        (
            first.endpoints.created,
            first.policies.created,
            first.subnets.created
        ),
        (10, 2, 1)
    );

    // Behind the driver's back: half the endpoints deleted, one policy
    // corrupted, an orphan endpoint added; and data that is not the
    // driver's: a policy of the operator's in the same namespace.
    for i in (0..10).step_by(2) {
        s.delete(&wep_key(["h1", "h2"][i % 2], &format!("p{i}")), None)
            .unwrap();
    }
    let web = keys::network_policy_key("openstack", "ossg.default.sg-web");
    let mut corrupt = value(s.as_ref(), &web);
    corrupt["spec"]["ingress"] = json!([{"action": "Allow"}]);
    s.put(&web, &serde_json::to_vec(&corrupt).unwrap(), None)
        .unwrap();
    let orphan = wep_key("h1", "gone");
    s.put(
        &orphan,
        &serde_json::to_vec(&value(s.as_ref(), &wep_key("h2", "p1"))).unwrap(),
        None,
    )
    .unwrap();
    let mine = keys::network_policy_key("openstack", "operator-policy");
    s.put(&mine, br#"{"kind":"NetworkPolicy"}"#, None).unwrap();
    let mine_rev = s.get(&mine).unwrap().unwrap().mod_revision;

    let second = resync(&sync, &snap).unwrap();
    assert_eq!(second.endpoints.created, 5);
    assert_eq!(second.endpoints.deleted, 1, "the orphan");
    assert_eq!(second.endpoints.unchanged, 5);
    assert_eq!(second.policies.updated, 1);
    assert_eq!(second.policies.unchanged, 1);
    assert_eq!(second.errors(), 0);
    assert!(s.get(&orphan).unwrap().is_none());
    assert_eq!(
        value(s.as_ref(), &web)["spec"]["ingress"][0]["protocol"],
        6,
        "tcp, as upstream writes it"
    );
    assert_eq!(s.get(&mine).unwrap().unwrap().mod_revision, mine_rev);

    // In sync: a third resync writes nothing at all.
    let rev = s.current_revision().unwrap();
    let third = resync(&sync, &snap).unwrap();
    assert_eq!(s.current_revision().unwrap(), rev, "{third:?}");
}

#[test]
fn a_group_that_cannot_be_expressed_keeps_its_last_good_policy() {
    let (_d, s) = store();
    let sync = Syncer::new(s.clone(), Config::default());
    let mut snap = snapshot(2);
    resync(&sync, &snap).unwrap();
    let web = keys::network_policy_key("openstack", "ossg.default.sg-web");
    let good = s.get(&web).unwrap().unwrap();
    snap.security_groups[0]["security_group_rules"][0]["remote_address_group_id"] = json!("ag-1");
    let report = resync(&sync, &snap).unwrap();
    assert_eq!(report.policies.errors.len(), 1, "{report:?}");
    assert!(report.policies.errors[0].contains("security group sg-web"));
    assert_eq!(
        s.get(&web).unwrap().unwrap(),
        good,
        "neither rewritten nor deleted"
    );
}

#[test]
fn felix_settings_are_provided_and_an_operators_are_kept() {
    let (_d, s) = store();
    let key = keys::felix_configuration_key();
    s.put(
        &key,
        br#"{"kind":"FelixConfiguration","apiVersion":"projectcalico.org/v3","metadata":{"name":"default","uid":"u-1"},"spec":{"logSeverityScreen":"Debug","interfacePrefix":"cali"}}"#,
        None,
    )
    .unwrap();
    let sync = Syncer::new(s.clone(), Config::default());
    sync.provide_felix_config().unwrap();
    let v = value(s.as_ref(), &key);
    assert_eq!(v["spec"]["interfacePrefix"], "cali,tap");
    assert_eq!(v["spec"]["endpointReportingEnabled"], true);
    assert_eq!(v["spec"]["logSeverityScreen"], "Debug");
    assert_eq!(v["metadata"]["uid"], "u-1");
    let ci = value(s.as_ref(), &keys::cluster_information_key());
    assert_eq!(ci["spec"]["clusterType"], "openstack");
    assert_eq!(ci["spec"]["datastoreReady"], true);
    let w = sync.provide_felix_config().unwrap();
    assert!(w.iter().all(|w| w.outcome == Outcome::Unchanged));
}

fn project_labels(s: &dyn Datastore, key: &str) -> (Value, Value) {
    let labels = value(s, key)["metadata"]["labels"].clone();
    (
        labels["projectcalico.org/openstack-project-name"].clone(),
        labels["projectcalico.org/openstack-project-parent-id"].clone(),
    )
}

/// While Keystone cannot be asked (`project_unavailable`), a port written
/// again keeps the project labels it has, by a port update and by a
/// resync alike; once Keystone says the project is unknown, they go.
#[test]
fn project_labels_outlive_a_keystone_outage() {
    let (_d, s) = store();
    let sync = Syncer::new(s.clone(), Config::default());
    let key = wep_key("h1", "p1");
    let named = |name: &str| {
        let mut e = extras();
        e.project = Some(calico_openstack::neutron::Project {
            name: Some(name.into()),
            parent_id: Some("parent-1".into()),
        });
        e
    };
    let outage = PortExtras {
        project_unavailable: true,
        ..extras()
    };
    let p = port("p1", "h1", "10.65.0.5");
    sync.sync_port(None, &p, &named("demo")).unwrap();
    let demo = (json!("demo"), json!("parent-1"));
    assert_eq!(project_labels(s.as_ref(), &key), demo);

    // A changed address during the outage: written, labels kept.
    let p2 = port("p1", "h1", "10.65.0.6");
    let w = sync.sync_port(Some(&p), &p2, &outage).unwrap();
    assert!(w
        .iter()
        .any(|w| w.key == key && w.outcome == Outcome::Updated));
    assert_eq!(project_labels(s.as_ref(), &key), demo);
    // Nothing else changed: nothing written.
    let w = sync.sync_port(Some(&p2), &p2, &outage).unwrap();
    assert!(w.iter().all(|w| w.outcome == Outcome::Unchanged), "{w:?}");

    // A resync during the outage keeps them too (and writes nothing).
    let mut snap = snapshot(0);
    snap.ports.push(PortWithExtras {
        port: p2.clone(),
        extras: outage.clone(),
        subnet_ids: vec![],
    });
    assert_eq!(resync(&sync, &snap).unwrap().endpoints.unchanged, 1);
    assert_eq!(project_labels(s.as_ref(), &key), demo);

    // Keystone back with a new name: relabelled; then unknown: no labels.
    snap.ports[0].extras = named("demo-renamed");
    assert_eq!(resync(&sync, &snap).unwrap().endpoints.updated, 1);
    assert_eq!(project_labels(s.as_ref(), &key).0, json!("demo-renamed"));
    sync.sync_port(Some(&p2), &p2, &extras()).unwrap();
    assert_eq!(project_labels(s.as_ref(), &key), (Value::Null, Value::Null));
    // An outage for an endpoint that never had them adds none.
    sync.sync_port(Some(&p2), &p, &outage).unwrap();
    assert_eq!(project_labels(s.as_ref(), &key), (Value::Null, Value::Null));
}
