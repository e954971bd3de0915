//! `calico-bench bgp-receiver` (hidden): the calico-rs receiver, as its own
//! process so its memory and CPU time are its own. It is what calico-node
//! runs for BGP: the speaker (calico_bgp `Driver`) on its thread, its
//! best-path changes sent over a channel to the main thread, which turns
//! them into kernel routes and programs them with `LearnedRoutes<RtNetlink>`
//! (`proto bird`), draining whatever arrived together into one apply as the
//! agent's loop does.
//!
//!   calico-bench bgp-receiver NETNS LOCAL_ADDR PEERS_FILE EXPECT
//!
//! PEERS_FILE has one peer address a line; every peer is iBGP (AS 64512)
//! and passive on our side. This node originates 192.168.20.0/26, as the
//! BIRD receiver does. Prints `ready` once listening, `rib N` when N
//! (= EXPECT) prefixes have a best path from a peer, `fib N` when they are
//! all programmed.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use calico_bgp::driver::{Command, Driver};
use calico_bgp::rib::{BestChange, Source};
use calico_bgp::session::SessionConfig;
use calico_bgp::speaker::{PeerConfig, Speaker};
use calico_bgp::wire::PathAttributes;
use calico_dataplane::learned::{LearnedRoutes, RTPROT_BIRD};
use calico_dataplane::netlink::{KernelRoute, RouteKind};
use calico_dataplane::RtNetlink;
use ipnet::IpNet;

use super::util::enter_netns;

pub const ASN: u32 = 64512;
pub const RECEIVER_BLOCK: &str = "192.168.20.0/26";

/// Calico's mesh protocol name for a peer address.
pub fn mesh_name(a: Ipv4Addr) -> String {
    format!("Mesh_{}", a.to_string().replace('.', "_"))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The kernel route calico-node programs for a best path learned from a
/// peer (no pools configured: a plain route via the next hop).
fn kernel_route(c: &BestChange) -> Option<KernelRoute> {
    let best = c.best.as_ref()?;
    if best.source == Source::Local {
        return None;
    }
    let gateway = match c.prefix {
        IpNet::V4(_) => IpAddr::V4(best.attrs.next_hop?),
        IpNet::V6(_) => IpAddr::V6(best.attrs.mp_next_hop?.global),
    };
    Some(KernelRoute {
        dst: c.prefix,
        kind: RouteKind::Via {
            gateway,
            iface: None,
            onlink: false,
        },
        protocol: RTPROT_BIRD,
    })
}

pub fn run(args: &[String]) -> Result<()> {
    let [ns, local, peers_file, expect] = args else {
        bail!("usage: calico-bench bgp-receiver NETNS LOCAL_ADDR PEERS_FILE EXPECT");
    };
    // Before any thread exists: every thread then lives in the namespace.
    enter_netns(ns)?;
    // As calico-node's main does.
    calico_dataplane::heap::tune();
    let local: Ipv4Addr = local.parse()?;
    let expect: usize = expect.parse()?;
    let peers: Vec<Ipv4Addr> = std::fs::read_to_string(peers_file)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse())
        .collect::<Result<_, _>>()
        .context("peers file")?;

    let nl = RtNetlink::new().map_err(|e| anyhow::anyhow!("netlink: {e}"))?;
    let mut learned = LearnedRoutes::new(nl, RTPROT_BIRD);
    learned.converged();
    learned.apply().map_err(|e| anyhow::anyhow!("{e}"))?;

    let (tx, rx) = std::sync::mpsc::channel::<Vec<BestChange>>();
    let mut in_rib = 0usize;
    let mut said = false;
    let sink = Box::new(move |changes: Vec<BestChange>| {
        for c in &changes {
            match &c.best {
                Some(p) if p.source != Source::Local => in_rib += 1,
                None => in_rib = in_rib.saturating_sub(1),
                _ => {}
            }
        }
        if !said && in_rib >= expect {
            said = true;
            say(&format!("rib {in_rib}"));
        }
        let _ = tx.send(changes);
    });
    let speaker = Speaker::new(local, ASN, None);
    let listen = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 179);
    let (driver, _) = Driver::start(listen, speaker, sink)?;
    let block: IpNet = RECEIVER_BLOCK.parse()?;
    driver.send(Command::LocalRoutes(vec![(
        block,
        PathAttributes::default(),
    )]));
    driver.send(Command::Peers(
        peers
            .iter()
            .map(|&a| {
                let mut s = SessionConfig::new(ASN, ASN, local);
                s.passive = true;
                PeerConfig {
                    name: mesh_name(a),
                    address: IpAddr::V4(a),
                    port: 179,
                    session: s,
                    rr_client: false,
                    keep_next_hop: false,
                    next_hop_self: false,
                    local_v4: Some(local),
                    local_v6: None,
                    source_address: None,
                    password: None,
                    allow_local_as: 0,
                    ttl_security: None,
                }
            })
            .collect(),
    ));
    // Let the speaker take the peers before saying it is ready.
    let _ = driver.snapshot(Duration::from_secs(10));
    say("ready");

    let mut reported = false;
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(c) => c,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(_) => return Ok(()),
        };
        let t = Instant::now();
        let mut n = 0;
        for batch in std::iter::once(first).chain(rx.try_iter()) {
            for c in &batch {
                learned.set(c.prefix, kernel_route(c));
                n += 1;
            }
        }
        learned.apply().map_err(|e| anyhow::anyhow!("{e}"))?;
        if std::env::var_os("BGP_BENCH_DEBUG").is_some() {
            eprintln!(
                "applied {n} changes in {:.1} ms ({} desired)",
                t.elapsed().as_secs_f64() * 1e3,
                learned.desired_len()
            );
        }
        if !reported && learned.desired_len() >= expect {
            reported = true;
            say(&format!(
                "fib {} failed {}",
                learned.desired_len(),
                learned.failures().len()
            ));
        }
    }
}
