//! One network's dnsmasq: its command line, and the hosts, options and
//! leases files it reads, as upstream's `DnsmasqRouted` builds them from
//! Neutron 13's dnsmasq driver. Deliberate differences, each for a reason:
//! - `--keep-in-foreground`: the agent supervises its dnsmasq as a child
//!   (a dead one is restarted) instead of tracking a daemon's pid file;
//! - the MTU option is the host's workload MTU (calico-node's MTU file),
//!   not upstream's constant 1500, so the VM's MTU fits the encapsulation.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::{Network, Subnet, V6Mode};

/// The MAC of every network's `ns-` device (upstream's fake DHCP port).
pub const DEVICE_MAC: &str = "02:00:00:00:00:00";
/// Neutron's `dnsmasq_lease_max`.
const LEASE_MAX: u128 = 1 << 24;

/// The agent's settings that shape every network's dnsmasq (Neutron's
/// `[DEFAULT]` options of the same names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `dhcp_confs`: one directory per network under it.
    pub confs_dir: PathBuf,
    /// `dns_domain` (Neutron's default `openstacklocal`; None: no domain).
    pub domain: Option<String>,
    /// `dhcp_lease_duration` (None: infinite, Neutron's -1).
    pub lease: Option<Duration>,
    /// `dhcp_renewal_time` / `dhcp_rebinding_time` (T1/T2), when set.
    pub renewal: Option<Duration>,
    pub rebinding: Option<Duration>,
    /// The workloads' MTU (calico-node's MTU file), when known.
    pub mtu: Option<u32>,
}

impl Settings {
    pub fn new(confs_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            confs_dir: confs_dir.into(),
            domain: Some("openstacklocal".into()),
            lease: Some(Duration::from_secs(86400)),
            renewal: None,
            rebinding: None,
            mtu: None,
        }
    }

    pub fn conf_dir(&self, network_id: &str) -> PathBuf {
        self.confs_dir.join(network_id)
    }
}

/// The network's device holding its gateways: `ns-` and the network id,
/// 14 characters in all (Neutron's device name of the DHCP port, whose id
/// the agent makes the network's).
pub fn device_name(network_id: &str) -> String {
    let id: String = network_id.chars().take(11).collect();
    format!("ns-{id}")
}

/// The addresses the device holds: each subnet's gateway with the
/// subnet's prefix length.
pub fn device_addresses(net: &Network) -> Vec<ipnet::IpNet> {
    net.subnets
        .iter()
        .filter_map(|s| {
            let gw = s.gateway?;
            ipnet::IpNet::new(gw, s.cidr.prefix_len()).ok()
        })
        .collect()
}

/// Taps of the network's ports, in port order, once each.
fn taps(net: &Network) -> Vec<&str> {
    let mut taps: Vec<&str> = Vec::new();
    for (p, _) in &net.ports {
        if p.tap.starts_with("tap") && !taps.contains(&p.tap.as_str()) {
            taps.push(&p.tap);
        }
    }
    taps
}

/// Neutron leaves IPv6 subnets shorter than /64 out of the ranges.
fn ranged(s: &Subnet) -> bool {
    !s.is_v6() || s.cidr.prefix_len() >= 64
}

fn lease_text(lease: Option<Duration>) -> String {
    lease.map_or("infinite".into(), |d| format!("{}s", d.as_secs()))
}

fn range(s: &Subnet, lease: &str) -> String {
    let net = s.cidr.trunc();
    match (net, s.v6_mode) {
        (ipnet::IpNet::V4(n), _) => format!(
            "--dhcp-range=set:{},{},static,{},{lease}",
            s.tag(),
            n.network(),
            n.netmask()
        ),
        (ipnet::IpNet::V6(n), V6Mode::Slaac) => format!(
            "--dhcp-range=set:{},{},slaac,ra-only,{},{lease}",
            s.tag(),
            n.network(),
            n.prefix_len()
        ),
        (ipnet::IpNet::V6(n), V6Mode::Stateful) => format!(
            "--dhcp-range=set:{},{},static,off-link,{},{lease}",
            s.tag(),
            n.network(),
            n.prefix_len()
        ),
    }
}

/// The command line (after the program name).
pub fn argv(net: &Network, settings: &Settings) -> Vec<String> {
    let dir = settings.conf_dir(&net.id);
    let file = |f: &str| dir.join(f).display().to_string();
    let dev = device_name(&net.id);
    let mut a: Vec<String> = vec![
        "--no-hosts".into(),
        "--no-resolv".into(),
        "--keep-in-foreground".into(),
        "--except-interface=lo".into(),
        format!("--pid-file={}", file("pid")),
        format!("--dhcp-hostsfile={}", file("host")),
        format!("--addn-hosts={}", file("addn_hosts")),
        format!("--dhcp-optsfile={}", file("opts")),
        format!("--dhcp-leasefile={}", file("leases")),
        "--dhcp-match=set:ipxe,175".into(),
        "--bind-dynamic".into(),
        format!("--interface={dev}"),
    ];
    let lease = lease_text(settings.lease);
    let subnets: Vec<&Subnet> = net.subnets.iter().filter(|s| ranged(s)).collect();
    // Stateful IPv6 ranges go last, as upstream's post-processing moves them.
    let stateful_v6 = |s: &Subnet| s.is_v6() && s.v6_mode == V6Mode::Stateful;
    a.extend(
        subnets
            .iter()
            .filter(|s| !stateful_v6(s))
            .map(|s| range(s, &lease)),
    );
    let mut tail: Vec<String> = subnets
        .iter()
        .filter(|s| stateful_v6(s))
        .map(|s| range(s, &lease))
        .collect();
    if let Some(mtu) = settings.mtu {
        a.push(format!("--dhcp-option-force=option:mtu,{mtu}"));
    }
    let size: u128 = subnets.iter().map(|s| subnet_size(s)).sum();
    a.push(format!("--dhcp-lease-max={}", size.min(LEASE_MAX)));
    if let Some(t1) = settings.renewal {
        a.push(format!("--dhcp-option-force=option:T1,{}s", t1.as_secs()));
    }
    if let Some(t2) = settings.rebinding {
        a.push(format!("--dhcp-option-force=option:T2,{}s", t2.as_secs()));
    }
    a.push("--conf-file=".into());
    if let Some(d) = &settings.domain {
        a.push(format!("--domain={d}"));
    }
    a.append(&mut tail);
    a.push("--enable-ra".into());
    a.push("--ra-param=ns-*,mtu:off,0".into());
    let taps = taps(net);
    a.extend(taps.iter().map(|t| format!("--interface={t}")));
    if !taps.is_empty() {
        a.push(format!("--bridge-interface={dev},{}", taps.join(",")));
    }
    a
}

fn subnet_size(s: &Subnet) -> u128 {
    let bits = u32::from(s.cidr.max_prefix_len() - s.cidr.prefix_len());
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

/// dnsmasq's form of an address in its files: IPv6 in brackets.
fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The port's name for `ip`: its DNS assignment's FQDN, else Neutron's
/// `host-<address with - for . and :>` in the domain.
pub fn fqdn(port_fqdn: Option<&str>, ip: IpAddr, domain: Option<&str>) -> String {
    if let Some(f) = port_fqdn {
        return f.to_string();
    }
    let host = format!("host-{}", ip.to_string().replace(['.', ':'], "-"));
    match domain {
        Some(d) => format!("{host}.{d}"),
        None => host,
    }
}

/// Each address the network serves: (port, address, subnet).
fn allocations(net: &Network) -> impl Iterator<Item = (&crate::model::Port, IpAddr, &Subnet)> {
    net.ports.iter().flat_map(move |(p, allocs)| {
        allocs.iter().filter_map(move |a| {
            let s = net.subnets.iter().find(|s| s.id == a.subnet_id)?;
            Some((p, a.ip, s))
        })
    })
}

/// `host`: one line per address, `<mac>,[tag:dhcpv6,]<name>,<ip>,set:port-<id>`
/// (the port tag carries its MTU option); SLAAC addresses are not given out.
pub fn hosts_file(net: &Network, settings: &Settings) -> String {
    let mut out = String::new();
    for (p, ip, s) in allocations(net) {
        if s.is_v6() && s.v6_mode == V6Mode::Slaac {
            continue;
        }
        let tag = if ip.is_ipv6() { "tag:dhcpv6," } else { "" };
        let name = fqdn(p.fqdn.as_deref(), ip, settings.domain.as_deref());
        out.push_str(&format!(
            "{},{tag}{name},{},set:port-{}\n",
            p.mac,
            bracketed(ip),
            p.id
        ));
    }
    out
}

/// `addn_hosts`: `<ip>\t<fqdn> <hostname>` per address, for DNS.
pub fn addn_hosts_file(net: &Network, settings: &Settings) -> String {
    let mut out = String::new();
    for (p, ip, _) in allocations(net) {
        let name = fqdn(p.fqdn.as_deref(), ip, settings.domain.as_deref());
        let host = name.split('.').next().unwrap_or(&name).to_string();
        out.push_str(&format!("{ip}\t{name} {host}\n"));
    }
    out
}

/// `opts`: per subnet DNS servers, classless static routes (host routes,
/// the network's other IPv4 subnets on link, then the default) and router;
/// per port its MTU. Lines joined by newlines, none after the last.
pub fn opts_file(net: &Network, settings: &Settings) -> String {
    let mut lines = Vec::new();
    for s in &net.subnets {
        if s.is_v6() && s.v6_mode == V6Mode::Slaac {
            continue;
        }
        subnet_opts(net, s, settings, &mut lines);
    }
    if let Some(mtu) = settings.mtu {
        for (p, allocs) in &net.ports {
            if allocs.iter().any(|a| a.ip.is_ipv4()) {
                lines.push(format!("tag:port-{},option:mtu,{mtu}", p.id));
            }
        }
    }
    lines.join("\n")
}

fn subnet_opts(net: &Network, s: &Subnet, settings: &Settings, lines: &mut Vec<String>) {
    let tag = s.tag();
    if !s.dns_servers.is_empty() {
        let any = s.dns_servers.iter().all(|a| a.is_unspecified());
        let (opt, list) = if s.is_v6() {
            (
                "option6:dns-server",
                s.dns_servers
                    .iter()
                    .map(|a| bracketed(*a))
                    .collect::<Vec<_>>(),
            )
        } else {
            (
                "option:dns-server",
                s.dns_servers.iter().map(|a| a.to_string()).collect(),
            )
        };
        if any {
            lines.push(format!("tag:{tag},{opt}"));
        } else {
            lines.push(format!("tag:{tag},{opt},{}", list.join(",")));
        }
    }
    if s.is_v6() {
        if let Some(d) = &settings.domain {
            lines.push(format!("tag:{tag},option6:domain-search,{d}"));
        }
        return;
    }
    let mut gateway = s.gateway;
    let mut routes: Vec<String> = Vec::new();
    for (dest, hop) in &s.host_routes {
        if dest.prefix_len() == 0 {
            gateway = gateway.or(Some(*hop));
        } else {
            routes.push(format!("{dest},{hop}"));
        }
    }
    let on_link = net
        .subnets
        .iter()
        .filter(|o| !o.is_v6() && o.id != s.id)
        .map(|o| format!("{},0.0.0.0", o.cidr.trunc()));
    let mut list: Vec<String> = on_link.collect();
    list.append(&mut routes);
    if !list.is_empty() {
        if let Some(gw) = gateway {
            list.push(format!("0.0.0.0/0,{gw}"));
        }
        let joined = list.join(",");
        lines.push(format!("tag:{tag},option:classless-static-route,{joined}"));
        lines.push(format!("tag:{tag},249,{joined}"));
    }
    match gateway {
        Some(gw) => lines.push(format!("tag:{tag},option:router,{gw}")),
        None => lines.push(format!("tag:{tag},option:router")),
    }
}

/// `leases` written before each start: `0 <mac> <ipv4> * *` (0: never
/// expires) for every IPv4 address, so a restarted dnsmasq knows them.
pub fn leases_file(net: &Network) -> String {
    let mut out = String::new();
    for (p, ip, _) in allocations(net) {
        if ip.is_ipv4() {
            out.push_str(&format!("0 {} {ip} * *\n", p.mac));
        }
    }
    out
}

/// Every file of a network's directory with its contents.
pub fn files(net: &Network, settings: &Settings) -> Vec<(&'static str, String)> {
    vec![
        ("host", hosts_file(net, settings)),
        ("addn_hosts", addn_hosts_file(net, settings)),
        ("opts", opts_file(net, settings)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Allocation, Port};

    fn subnet(id: &str, cidr: &str, gw: Option<&str>, mode: V6Mode) -> Subnet {
        Subnet {
            id: id.into(),
            network_id: "calico".into(),
            cidr: cidr.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            dns_servers: vec![],
            host_routes: vec![],
            v6_mode: mode,
        }
    }

    fn port(n: u8, ips: &[(&str, &str)]) -> (Port, Vec<Allocation>) {
        let p = Port {
            id: format!("port{n}"),
            tap: format!("tap{n}"),
            mac: format!("fa:16:3e:00:00:0{n}"),
            ips: ips.iter().map(|(ip, _)| ip.parse().unwrap()).collect(),
            network_id: None,
            fqdn: None,
        };
        let a = ips
            .iter()
            .map(|(ip, s)| Allocation {
                ip: ip.parse().unwrap(),
                subnet_id: (*s).into(),
            })
            .collect();
        (p, a)
    }

    /// Upstream's TestDnsmasqRouted network: a v4 /24, a v6 /80 and three
    /// taps; the device is named from the network id.
    fn upstream_network(slaac: bool) -> Network {
        let mut subnets = vec![
            subnet(
                "v4subnet-1",
                "10.28.0.0/24",
                Some("10.28.0.1"),
                V6Mode::Stateful,
            ),
            subnet(
                "v6subnet-1",
                "2001:db8:1::/80",
                Some("2001:db8:1::1"),
                V6Mode::Stateful,
            ),
        ];
        if slaac {
            subnets.insert(
                1,
                subnet("v6subnet-2", "2001:e000:1::/64", None, V6Mode::Slaac),
            );
        }
        Network {
            id: "dhcp".into(),
            subnets,
            ports: (1..=3)
                .map(|n| port(n, &[("10.28.0.5", "v4subnet-1")]))
                .collect(),
        }
    }

    /// The arguments upstream's test keeps after filtering the fixed ones
    /// (files, lease max, conf-file, domain, ipxe, no-hosts/resolv).
    fn filtered(argv: &[String]) -> Vec<&str> {
        let fixed = [
            "--no-hosts",
            "--no-resolv",
            "--keep-in-foreground",
            "--pid-file=",
            "--dhcp-hostsfile=",
            "--addn-hosts=",
            "--dhcp-optsfile=",
            "--dhcp-leasefile=",
            "--dhcp-match=",
            "--dhcp-lease-max=",
            "--conf-file=",
            "--domain=",
        ];
        argv.iter()
            .map(String::as_str)
            .filter(|a| !fixed.iter().any(|f| a.starts_with(f)))
            .collect()
    }

    #[test]
    fn the_command_line_is_upstreams() {
        let mut settings = Settings::new("/var/lib/neutron/dhcp");
        settings.mtu = None;
        let mut net = upstream_network(false);
        net.id = "dhcp".into();
        let a = argv(&net, &settings);
        assert_eq!(
            filtered(&a),
            [
                "--except-interface=lo",
                "--bind-dynamic",
                "--interface=ns-dhcp",
                "--dhcp-range=set:subnet-v4subnet-1,10.28.0.0,static,255.255.255.0,86400s",
                "--dhcp-range=set:subnet-v6subnet-1,2001:db8:1::,static,off-link,80,86400s",
                "--enable-ra",
                "--ra-param=ns-*,mtu:off,0",
                "--interface=tap1",
                "--interface=tap2",
                "--interface=tap3",
                "--bridge-interface=ns-dhcp,tap1,tap2,tap3",
            ]
        );
        assert!(a.contains(&"--dhcp-lease-max=16777216".to_string()));
        assert!(a.contains(&"--conf-file=".to_string()));
        assert!(a.contains(&"--pid-file=/var/lib/neutron/dhcp/dhcp/pid".to_string()));
        assert!(a.contains(&"--domain=openstacklocal".to_string()));
    }

    #[test]
    fn a_slaac_range_keeps_its_place_and_the_stateful_one_goes_last() {
        let a = argv(&upstream_network(true), &Settings::new("/d"));
        let ranges: Vec<&str> = filtered(&a)
            .into_iter()
            .filter(|a| a.starts_with("--dhcp-range"))
            .collect();
        assert_eq!(
            ranges,
            [
                "--dhcp-range=set:subnet-v4subnet-1,10.28.0.0,static,255.255.255.0,86400s",
                "--dhcp-range=set:subnet-v6subnet-2,2001:e000:1::,slaac,ra-only,64,86400s",
                "--dhcp-range=set:subnet-v6subnet-1,2001:db8:1::,static,off-link,80,86400s",
            ]
        );
    }

    #[test]
    fn lease_max_mtu_and_renewal_follow_the_settings() {
        let net = Network {
            id: "0123456789abcdef".into(),
            subnets: vec![subnet(
                "s",
                "10.65.0.0/24",
                Some("10.65.0.1"),
                V6Mode::Stateful,
            )],
            ports: vec![port(1, &[("10.65.0.2", "s")])],
        };
        let mut settings = Settings::new("/d");
        settings.mtu = Some(1450);
        settings.renewal = Some(Duration::from_secs(10));
        settings.lease = None;
        let a = argv(&net, &settings);
        for want in [
            "--dhcp-lease-max=256",
            "--dhcp-option-force=option:mtu,1450",
            "--dhcp-option-force=option:T1,10s",
            "--dhcp-range=set:subnet-s,10.65.0.0,static,255.255.255.0,infinite",
            "--interface=ns-0123456789a",
        ] {
            assert!(a.contains(&want.to_string()), "{want} in {a:?}");
        }
        assert_eq!(device_name("0123456789abcdef").len(), 14);
        assert_eq!(
            device_addresses(&net),
            vec!["10.65.0.1/24".parse::<ipnet::IpNet>().unwrap()]
        );
    }

    #[test]
    fn hosts_and_addn_hosts_as_neutron_writes_them() {
        let mut net = Network {
            id: "n".into(),
            subnets: vec![
                subnet("s4", "10.65.0.0/24", Some("10.65.0.1"), V6Mode::Stateful),
                subnet("s6", "fdca:3ba5:a17a:4ba3::/64", None, V6Mode::Stateful),
            ],
            ports: vec![port(
                1,
                &[("10.65.0.2", "s4"), ("fdca:3ba5:a17a:4ba3::2", "s6")],
            )],
        };
        let settings = Settings::new("/d");
        assert_eq!(
            hosts_file(&net, &settings),
            "fa:16:3e:00:00:01,host-10-65-0-2.openstacklocal,10.65.0.2,set:port-port1\n\
             fa:16:3e:00:00:01,tag:dhcpv6,host-fdca-3ba5-a17a-4ba3--2.openstacklocal,[fdca:3ba5:a17a:4ba3::2],set:port-port1\n"
        );
        net.ports[0].0.fqdn = Some("vm1.example.org".into());
        assert!(addn_hosts_file(&net, &settings).starts_with("10.65.0.2\tvm1.example.org vm1\n"));
        assert_eq!(leases_file(&net), "0 fa:16:3e:00:00:01 10.65.0.2 * *\n");
        net.subnets[1].v6_mode = V6Mode::Slaac;
        assert_eq!(
            hosts_file(&net, &settings).lines().count(),
            1,
            "SLAAC: no host line"
        );
    }

    #[test]
    fn opts_as_neutron_writes_them() {
        let mut s4 = subnet("s4", "10.65.0.0/24", Some("10.65.0.1"), V6Mode::Stateful);
        s4.dns_servers = vec!["8.8.8.8".parse().unwrap(), "8.8.4.4".parse().unwrap()];
        s4.host_routes = vec![(
            "11.11.0.0/16".parse().unwrap(),
            "10.65.0.1".parse().unwrap(),
        )];
        let mut s6 = subnet("s6", "fd00:1::/64", Some("fd00:1::1"), V6Mode::Stateful);
        s6.dns_servers = vec!["fd00::53".parse().unwrap()];
        let other = subnet("t4", "10.66.0.0/24", None, V6Mode::Stateful);
        let net = Network {
            id: "n".into(),
            subnets: vec![s4, s6, other],
            ports: vec![port(1, &[("10.65.0.2", "s4")])],
        };
        let mut settings = Settings::new("/d");
        settings.mtu = Some(1450);
        assert_eq!(
            opts_file(&net, &settings),
            "tag:subnet-s4,option:dns-server,8.8.8.8,8.8.4.4\n\
             tag:subnet-s4,option:classless-static-route,10.66.0.0/24,0.0.0.0,11.11.0.0/16,10.65.0.1,0.0.0.0/0,10.65.0.1\n\
             tag:subnet-s4,249,10.66.0.0/24,0.0.0.0,11.11.0.0/16,10.65.0.1,0.0.0.0/0,10.65.0.1\n\
             tag:subnet-s4,option:router,10.65.0.1\n\
             tag:subnet-s6,option6:dns-server,[fd00::53]\n\
             tag:subnet-s6,option6:domain-search,openstacklocal\n\
             tag:subnet-t4,option:classless-static-route,10.65.0.0/24,0.0.0.0\n\
             tag:subnet-t4,249,10.65.0.0/24,0.0.0.0\n\
             tag:subnet-t4,option:router\n\
             tag:port-port1,option:mtu,1450"
        );
    }
}
