//! Each network's `ns-<network id>` device holding its subnets' gateways,
//! made with `ip` as upstream's interface driver makes it: MAC
//! 02:00:00:00:00:00, up, `<gateway>/<prefix>` per subnet, and the on-link
//! subnet routes the addresses bring deleted (the subnet's addresses are
//! routed one by one to their taps and hosts, not to this device). This
//! kernel may lack dummy devices: then a veth pair stands in (`ns-…` with
//! an idle peer `nsp-…`, both up), which, unlike an empty bridge, has a
//! carrier and so the link-local address dnsmasq sends router
//! advertisements from (SLAAC failed over a bridge).

use std::process::Command;

use anyhow::{bail, Result};
use calico_dhcp::dnsmasq::DEVICE_MAC;
use ipnet::IpNet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dummy,
    Veth,
}

impl Kind {
    /// Dummy if the kernel makes one, else a veth pair.
    pub fn probe() -> Kind {
        let probe = "calico-dhcp-prb";
        if ip(&["link", "add", probe, "type", "dummy"]).is_ok() {
            let _ = ip(&["link", "del", probe]);
            return Kind::Dummy;
        }
        Kind::Veth
    }
}

/// The idle peer of a veth stand-in: `nsp-` and the same id (15 characters).
fn peer_name(name: &str) -> String {
    format!("nsp{}", name.strip_prefix("ns").unwrap_or(name))
}

fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes the device exist, up, with exactly `addrs`.
pub fn ensure(kind: Kind, name: &str, addrs: &[IpNet]) -> Result<()> {
    if ip(&["link", "show", "dev", name]).is_err() {
        match kind {
            Kind::Dummy => ip(&["link", "add", name, "type", "dummy"])?,
            Kind::Veth => {
                let peer = peer_name(name);
                ip(&["link", "add", name, "type", "veth", "peer", "name", &peer])?
            }
        };
        ip(&["link", "set", "dev", name, "address", DEVICE_MAC])?;
    }
    if kind == Kind::Veth {
        ip(&["link", "set", "dev", &peer_name(name), "up"])?;
    }
    ip(&["link", "set", "dev", name, "up"])?;
    let have = addresses(name)?;
    for a in have.iter().filter(|a| !addrs.contains(a)) {
        ip(&["addr", "del", &a.to_string(), "dev", name])?;
    }
    for a in addrs.iter().filter(|a| !have.contains(a)) {
        let text = a.to_string();
        let mut args = vec!["addr", "add", &text, "dev", name];
        if a.addr().is_ipv6() {
            // No duplicate detection: an empty device cannot do it, and
            // dnsmasq cannot use a tentative address.
            args.push("nodad");
        }
        ip(&args)?;
    }
    for a in addrs {
        let net = a.trunc().to_string();
        // Gone already when the address was there before.
        let _ = ip(&["route", "del", &net, "dev", name, "proto", "kernel"]);
    }
    Ok(())
}

/// The device's global addresses.
fn addresses(name: &str) -> Result<Vec<IpNet>> {
    let out = ip(&["-o", "addr", "show", "dev", name, "scope", "global"])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|t| *t == "inet" || *t == "inet6")?;
            w.next()?.parse().ok()
        })
        .collect())
}

/// Removes the device (a veth's peer goes with it).
pub fn remove(name: &str) -> Result<()> {
    if ip(&["link", "show", "dev", name]).is_ok() {
        ip(&["link", "del", name])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_veth_stand_ins_peer_name_fits_the_kernels_limit() {
        let name = calico_dhcp::dnsmasq::device_name("0123456789abcdef");
        assert_eq!(super::peer_name(&name), "nsp-0123456789a");
        assert!(super::peer_name(&name).len() <= 15);
    }
}
