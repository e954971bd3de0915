//! Fixtures shared by the integration tests: an IPAM on a fresh `local`
//! store (temp dir) or a fresh etcd (killed on drop), and resource helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use calico_api::network::{
    AllowedUse, EncapMode, IPPool, IPPoolSpec, IPReservation, IPReservationSpec, Node, NodeSpec,
};
use calico_api::AnyResource;
use calico_client::Client;
use calico_datastore::testing::EtcdServer;
use calico_datastore::{connect, DatastoreConfig};
use calico_ipam::Ipam;

pub struct Fixture {
    pub ipam: Ipam,
    pub client: Client,
    pub config: DatastoreConfig,
    pub etcd: Option<EtcdServer>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn local() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = DatastoreConfig::Local {
            path: dir.path().join("calico.db"),
        };
        Fixture::open(config, None, Some(dir))
    }

    pub fn etcd() -> Fixture {
        let etcd = EtcdServer::start();
        let config = etcd.datastore_config();
        Fixture::open(config, Some(etcd), None)
    }

    fn open(
        config: DatastoreConfig,
        etcd: Option<EtcdServer>,
        dir: Option<tempfile::TempDir>,
    ) -> Fixture {
        let store: Arc<dyn calico_datastore::Datastore> = Arc::from(connect(&config).unwrap());
        Fixture {
            ipam: Ipam::new(store.clone()),
            client: Client::new(store),
            config,
            etcd,
            _dir: dir,
        }
    }

    /// Another IPAM on the same store (a second "process").
    pub fn reopen(&self) -> Ipam {
        Ipam::new(Arc::from(connect(&self.config).unwrap()))
    }

    pub fn pool(&self, name: &str, cidr: &str, f: impl FnOnce(&mut IPPoolSpec)) {
        let mut spec = IPPoolSpec {
            cidr: cidr.into(),
            ..Default::default()
        };
        f(&mut spec);
        self.client
            .create(AnyResource::IPPool(IPPool::new(name, spec)))
            .unwrap();
    }

    pub fn update_pool(&self, name: &str, f: impl FnOnce(&mut IPPoolSpec)) {
        let mut p = self.client.get_as::<IPPool>("", name).unwrap().unwrap();
        f(&mut p.spec);
        self.client.replace(AnyResource::IPPool(p)).unwrap();
    }

    pub fn node(&self, name: &str, labels: &[(&str, &str)]) {
        let mut n = Node::new(name, NodeSpec::default());
        n.metadata.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.client.create(AnyResource::Node(n)).unwrap();
    }

    pub fn get_node(&self, name: &str) -> Option<Node> {
        self.client.get_as::<Node>("", name).unwrap()
    }

    pub fn reservation(&self, name: &str, cidrs: &[&str]) {
        let r = IPReservation::new(
            name,
            IPReservationSpec {
                reserved_cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            },
        );
        self.client.create(AnyResource::IPReservation(r)).unwrap();
    }
}

pub fn uses(u: &[AllowedUse]) -> impl FnOnce(&mut IPPoolSpec) + '_ {
    move |s| s.allowed_uses = u.to_vec()
}

pub fn block_size(bs: u8) -> impl FnOnce(&mut IPPoolSpec) {
    move |s| s.block_size = Some(bs)
}

pub fn vxlan(s: &mut IPPoolSpec) {
    s.vxlan_mode = Some(EncapMode::Always);
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn attrs(node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("node".to_string(), node.to_string())])
}

/// Runs each listed test function once per backend (`mod local`, `mod etcd`).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $name() { super::$name(&super::common::Fixture::local()) } )*
        }
        mod etcd {
            $( #[test] fn $name() { super::$name(&super::common::Fixture::etcd()) } )*
        }
    };
}
