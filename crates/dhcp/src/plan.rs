//! What to do with each network's dnsmasq when the data changes: any
//! change to what a network serves restarts that network's dnsmasq, as
//! upstream's agent does (the taps are on its command line), and networks
//! that did not change are left alone. Not a SIGHUP for file-only changes:
//! dnsmasq 2.90 (Debian 12) crashed (SIGSEGV) answering a renewal after a
//! SIGHUP had changed the client's address; a restart with the leases file
//! rewritten NAKs the old address and the client takes the new one.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::dnsmasq::{self, Settings};
use crate::model::Network;

/// Everything a network's dnsmasq is started or reloaded with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub network_id: String,
    pub argv: Vec<String>,
    /// The hosts, addn_hosts and opts files, with their contents.
    pub files: Vec<(&'static str, String)>,
    /// Written before each start only.
    pub leases: String,
    pub device: String,
    pub addresses: Vec<IpNet>,
}

impl Served {
    pub fn new(net: &Network, settings: &Settings) -> Served {
        Served {
            network_id: net.id.clone(),
            argv: dnsmasq::argv(net, settings),
            files: dnsmasq::files(net, settings),
            leases: dnsmasq::leases_file(net),
            device: dnsmasq::device_name(&net.id),
            addresses: dnsmasq::device_addresses(net),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Device, files, then dnsmasq.
    Start(String),
    /// Stop dnsmasq, then as Start.
    Restart(String),
    /// Stop dnsmasq, remove the device and the network's directory.
    Stop(String),
}

/// The steps from what runs to what is wanted, by network id.
pub fn plan(running: &BTreeMap<String, Served>, wanted: &BTreeMap<String, Served>) -> Vec<Step> {
    let mut steps: Vec<Step> = running
        .keys()
        .filter(|id| !wanted.contains_key(*id))
        .map(|id| Step::Stop(id.clone()))
        .collect();
    for (id, new) in wanted {
        match running.get(id) {
            None => steps.push(Step::Start(id.clone())),
            Some(old) if old != new => steps.push(Step::Restart(id.clone())),
            Some(_) => {}
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(id: &str, taps: &[&str], host: &str) -> Served {
        Served {
            network_id: id.into(),
            argv: taps.iter().map(|t| format!("--interface={t}")).collect(),
            files: vec![("host", host.into())],
            leases: String::new(),
            device: dnsmasq::device_name(id),
            addresses: vec!["10.65.0.1/24".parse().unwrap()],
        }
    }

    #[test]
    fn only_what_changed_is_touched() {
        let running: BTreeMap<_, _> = [
            ("a".to_string(), served("a", &["tap1"], "h1")),
            ("b".to_string(), served("b", &["tap2"], "h2")),
            ("c".to_string(), served("c", &["tap3"], "h3")),
            ("d".to_string(), served("d", &["tap4"], "h4")),
        ]
        .into();
        let mut wanted = running.clone();
        wanted.insert("a".into(), served("a", &["tap1", "tap5"], "h1"));
        wanted.insert("b".into(), served("b", &["tap2"], "h2 changed"));
        wanted.remove("c");
        wanted.insert("e".into(), served("e", &["tap6"], "h6"));
        assert_eq!(
            plan(&running, &wanted),
            vec![
                Step::Stop("c".into()),
                Step::Restart("a".into()),
                Step::Restart("b".into()),
                Step::Start("e".into()),
            ]
        );
        assert_eq!(plan(&wanted, &wanted), vec![]);
        let mut moved = wanted.clone();
        moved.get_mut("d").unwrap().addresses = vec!["10.66.0.1/24".parse().unwrap()];
        assert_eq!(plan(&wanted, &moved), vec![Step::Restart("d".into())]);
    }
}
