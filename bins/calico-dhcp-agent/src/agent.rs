//! The agent's loop: mirror the subnets and this host's endpoints from the
//! datastore, turn them into networks, and move each network's dnsmasq to
//! match. A lost datastore leaves every dnsmasq serving what it had; bad
//! data is reported once and skipped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calico_datastore::Datastore;
use calico_dhcp::model::{networks, Port, Subnet};
use calico_dhcp::plan::Served;
use calico_openstack::keys::{subnet_dir, workload_endpoint_prefix, LEGACY_SUBNET_DIR};
use tracing::{info, warn};

use crate::config::AgentConfig;
use crate::device::Kind;
use crate::runner::Runner;
use crate::watch::PrefixCache;

/// Set by SIGTERM/SIGINT.
pub static STOP: AtomicBool = AtomicBool::new(false);

const POLL: Duration = Duration::from_millis(100);
const MTU_CHECK: Duration = Duration::from_secs(1);
const RECONNECT: Duration = Duration::from_secs(2);

pub struct Agent {
    cfg: AgentConfig,
    store: Option<Box<dyn Datastore>>,
    subnets: PrefixCache,
    legacy_subnets: PrefixCache,
    endpoints: PrefixCache,
    runner: Runner,
    /// Problems already reported, by key, so each is logged once.
    reported: BTreeMap<String, String>,
    mtu: Option<u32>,
    next_mtu_check: Instant,
}

impl Agent {
    pub fn new(cfg: AgentConfig) -> Agent {
        let kind = Kind::probe();
        info!(host = %cfg.host, device = ?kind, confs = %cfg.settings.confs_dir.display(), "calico-dhcp-agent starting");
        let escaped_host = cfg.host.replace('-', "--");
        let endpoints = format!(
            "{}{escaped_host}-openstack-",
            workload_endpoint_prefix(&cfg.region.namespace())
        );
        let mut runner = Runner::new(cfg.dnsmasq.clone(), cfg.settings.clone(), kind);
        runner.adopt_leftovers();
        Agent {
            subnets: PrefixCache::new(format!("{}/", subnet_dir(&cfg.region))),
            legacy_subnets: PrefixCache::new(format!("{LEGACY_SUBNET_DIR}/")),
            endpoints: PrefixCache::new(endpoints),
            store: None,
            runner,
            reported: BTreeMap::new(),
            mtu: None,
            next_mtu_check: Instant::now(),
            cfg,
        }
    }

    pub fn run(&mut self) {
        while !STOP.load(Ordering::Relaxed) {
            let mut changed = self.check_mtu();
            match self.poll_store() {
                Ok(c) => changed |= c,
                Err(e) => {
                    warn!(error = %e, "datastore unavailable; every dnsmasq keeps serving what it had");
                    self.store = None;
                    std::thread::sleep(RECONNECT);
                }
            }
            if changed {
                let wanted = self.wanted();
                self.runner.apply(wanted);
            }
            self.runner.supervise();
        }
        info!("stopping");
        self.runner.stop_all();
    }

    fn poll_store(&mut self) -> Result<bool, String> {
        if self.store.is_none() {
            let s = calico_datastore::connect(&self.cfg.datastore).map_err(|e| e.to_string())?;
            info!(datastore = %s.describe(), "connected");
            self.subnets.reset();
            self.legacy_subnets.reset();
            self.endpoints.reset();
            self.store = Some(s);
        }
        let store = self.store.as_deref().expect("connected above");
        let mut changed = false;
        for cache in [
            &mut self.subnets,
            &mut self.legacy_subnets,
            &mut self.endpoints,
        ] {
            changed |= cache.poll(store, POLL / 3).map_err(|e| e.to_string())?;
        }
        Ok(changed)
    }

    /// calico-node's MTU file, read every second; true when it changed.
    fn check_mtu(&mut self) -> bool {
        if Instant::now() < self.next_mtu_check {
            return false;
        }
        self.next_mtu_check = Instant::now() + MTU_CHECK;
        let mtu = std::fs::read_to_string(&self.cfg.mtu_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        if mtu == self.mtu {
            return false;
        }
        info!(?mtu, file = %self.cfg.mtu_file.display(), "workload MTU");
        self.mtu = mtu;
        self.runner.set_mtu(mtu);
        true
    }

    /// What every network's dnsmasq should serve now.
    fn wanted(&mut self) -> BTreeMap<String, Served> {
        let mut subnets = BTreeMap::new();
        let mut problems = BTreeMap::new();
        // v2 first; the v1 tree only for subnets v2 does not have.
        for cache in [&self.subnets, &self.legacy_subnets] {
            for (key, value) in &cache.values {
                let id = key.rsplit('/').next().unwrap_or(key).to_string();
                if subnets.contains_key(&id) {
                    continue;
                }
                match Subnet::parse(&id, value) {
                    Ok(s) => {
                        subnets.insert(id, s);
                    }
                    Err(e) => {
                        problems.insert(key.clone(), e);
                    }
                }
            }
        }
        let mut ports = BTreeMap::new();
        for (key, value) in &self.endpoints.values {
            match Port::parse(&self.cfg.host, value) {
                Ok(Some(p)) => {
                    ports.insert(key.clone(), p);
                }
                Ok(None) => {}
                Err(e) => {
                    problems.insert(key.clone(), e);
                }
            }
        }
        for (key, e) in &problems {
            if self.reported.get(key) != Some(e) {
                warn!(%key, error = %e, "skipped");
            }
        }
        self.reported = problems;
        let settings = self.runner.settings();
        networks(&subnets, &ports)
            .into_iter()
            .map(|(id, net)| (id, Served::new(&net, settings)))
            .collect()
    }
}
