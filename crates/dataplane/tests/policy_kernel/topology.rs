//! One simulated compute host (a network namespace running the nftables
//! dataplane) and dual-stack workloads in namespaces of their own, wired as
//! Calico wires them: a veth per workload, a /32 and a /128 route on the
//! host side, and in the workload a default route to a gateway whose MAC is
//! a static neighbour entry (`ee:ee:ee:ee:ee:ee`, as Felix sets on the host
//! side). Echo servers run on threads that entered the workloads'
//! namespaces; probes run on threads in the source workload's namespace. No
//! child process is involved, and nothing leaves the namespaces made here
//! (198.18.10.0/24 and fd00:10::/64 only). The guard removes everything,
//! also when the test panics.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

pub const TCP_PORTS: [u16; 3] = [80, 81, 5432];
pub const UDP_PORTS: [u16; 2] = [53, 5432];
const GATEWAY_MAC: &str = "ee:ee:ee:ee:ee:ee";

#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    /// Calico namespace (ns1, ns2).
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub v4: String,
    pub v6: String,
    pub iface: String,
    pub netns: String,
}

impl Workload {
    pub fn addr(&self, v6: bool) -> IpAddr {
        if v6 { &self.v6 } else { &self.v4 }.parse().unwrap()
    }
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Enters `ns` on the calling thread and checks it did.
pub fn enter_netns(ns: &str) {
    let path = format!("/var/run/netns/{ns}");
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
    let me = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
    let target = std::fs::metadata(&path).unwrap();
    assert_eq!((me.dev(), me.ino()), (target.dev(), target.ino()));
}

pub struct Topology {
    pub host: String,
    pub workloads: Vec<Workload>,
    namespaces: Vec<String>,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.servers.drain(..) {
            let _ = s.join();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Labels of a workload as (key, value) pairs.
type Labels = &'static [(&'static str, &'static str)];

/// (name, namespace, labels) of the six workloads.
const WORKLOADS: [(&str, &str, Labels); 6] = [
    ("w1", "ns1", &[("app", "a"), ("role", "x"), ("env", "prod")]),
    ("w2", "ns1", &[("app", "b")]),
    ("w3", "ns1", &[("app", "c"), ("role", "y")]),
    ("w4", "ns2", &[("app", "a"), ("env", "prod")]),
    ("w5", "ns2", &[("app", "b"), ("role", "x")]),
    ("w6", "ns2", &[("app", "c")]),
];

impl Topology {
    pub fn new(prefix: &str) -> Topology {
        // Leftovers of an interrupted run with the same prefix.
        for suffix in ["h", "w1", "w2", "w3", "w4", "w5", "w6"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{prefix}-{suffix}")])
                .output();
        }
        let mut t = Topology {
            host: format!("{prefix}-h"),
            workloads: Vec::new(),
            namespaces: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        let host = t.host.clone();
        t.add_netns(&host);
        for sysctl in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            sh(&["ip", "netns", "exec", &host, "sysctl", "-qw", sysctl]);
        }
        for (i, (name, namespace, labels)) in WORKLOADS.iter().enumerate() {
            let w = Workload {
                name: name.to_string(),
                namespace: namespace.to_string(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                v4: format!("198.18.10.{}", i + 1),
                v6: format!("fd00:10::{}", i + 1),
                iface: format!("cali{name}"),
                netns: format!("{prefix}-{name}"),
            };
            t.plug(&w);
            t.workloads.push(w);
        }
        for w in t.workloads.clone() {
            t.serve(&w.netns);
        }
        t
    }

    fn add_netns(&mut self, ns: &str) {
        sh(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    /// A workload namespace with `eth0` holding both addresses, attached to
    /// the host by a veth `cali<name>`.
    fn plug(&mut self, w: &Workload) {
        let (ns, h, iface) = (w.netns.as_str(), self.host.clone(), w.iface.as_str());
        self.add_netns(ns);
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.accept_dad=0",
        ]);
        sh(&[
            "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", iface,
            "netns", &h,
        ]);
        sh(&[
            "ip",
            "-n",
            &h,
            "link",
            "set",
            iface,
            "address",
            GATEWAY_MAC,
            "up",
        ]);
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        let v4 = format!("{}/32", w.v4);
        let v6 = format!("{}/128", w.v6);
        sh(&["ip", "-n", ns, "addr", "add", &v4, "dev", "eth0"]);
        sh(&[
            "ip", "-n", ns, "-6", "addr", "add", &v6, "dev", "eth0", "nodad",
        ]);
        for (fam, gw) in [("-4", "169.254.1.1"), ("-6", "fe80::1")] {
            sh(&[
                "ip",
                "-n",
                ns,
                fam,
                "neigh",
                "add",
                gw,
                "lladdr",
                GATEWAY_MAC,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ]);
            sh(&["ip", "-n", ns, fam, "route", "add", gw, "dev", "eth0"]);
            sh(&[
                "ip", "-n", ns, fam, "route", "add", "default", "via", gw, "dev", "eth0",
            ]);
        }
        sh(&[
            "ip", "-n", &h, "route", "add", &v4, "dev", iface, "scope", "link",
        ]);
        sh(&["ip", "-n", &h, "-6", "route", "add", &v6, "dev", iface]);
    }

    /// TCP listeners and UDP echo sockets on every probe port, dual-stack.
    fn serve(&mut self, ns: &str) {
        let ns = ns.to_string();
        let stop = self.stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        self.servers.push(std::thread::spawn(move || {
            enter_netns(&ns);
            let tcp: Vec<TcpListener> = TCP_PORTS
                .iter()
                .map(|p| TcpListener::bind(("::", *p)).unwrap())
                .collect();
            let udp: Vec<UdpSocket> = UDP_PORTS
                .iter()
                .map(|p| UdpSocket::bind(("::", *p)).unwrap())
                .collect();
            for l in &tcp {
                l.set_nonblocking(true).unwrap();
            }
            for u in &udp {
                u.set_nonblocking(true).unwrap();
            }
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 64];
            // Accepted connections echo until closed (long-lived flows).
            let mut conns: Vec<std::net::TcpStream> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let mut busy = false;
                for l in &tcp {
                    while let Ok((conn, _)) = l.accept() {
                        busy = true;
                        conn.set_nonblocking(true).unwrap();
                        conns.push(conn);
                    }
                }
                conns.retain_mut(|c| match std::io::Read::read(c, &mut buf) {
                    Ok(0) => false,
                    Ok(n) => {
                        busy = true;
                        std::io::Write::write_all(c, &buf[..n]).is_ok()
                    }
                    Err(e) => e.kind() == ErrorKind::WouldBlock,
                });
                for u in &udp {
                    while let Ok((n, from)) = u.recv_from(&mut buf) {
                        busy = true;
                        let _ = u.send_to(&buf[..n], from);
                    }
                }
                if !busy {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }));
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("echo servers did not start");
    }
}

/// What a probe sends: the first packet of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Tcp(u16),
    Udp(u16),
    /// ICMP echo request (type 8, or 128 for IPv6; code 0).
    Ping,
}

/// Source ports are chosen, so rules on source ports can be evaluated.
static NEXT_PORT: AtomicU16 = AtomicU16::new(20000);
static NEXT_ICMP_ID: AtomicU16 = AtomicU16::new(1);

pub fn next_source_port() -> u16 {
    let p = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
    if p >= 60000 {
        NEXT_PORT.store(20000, Ordering::SeqCst);
    }
    p
}

/// Runs one probe from the calling thread's namespace; true if answered.
pub fn probe(dst: IpAddr, src_port: u16, p: Probe, timeout: Duration) -> bool {
    match p {
        Probe::Tcp(port) => tcp(dst, src_port, port, timeout),
        Probe::Udp(port) => udp(dst, src_port, port, timeout),
        Probe::Ping => ping(dst, timeout),
    }
}

fn domain(a: IpAddr) -> Domain {
    if a.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

fn unspecified(a: IpAddr, port: u16) -> SocketAddr {
    if a.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], port))
    } else {
        SocketAddr::from(([0u16; 8], port))
    }
}

fn tcp(dst: IpAddr, src_port: u16, port: u16, timeout: Duration) -> bool {
    let s = Socket::new(domain(dst), Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.set_reuse_address(true).unwrap();
    // A closed connection must not hold its source port for a minute.
    s.set_linger(Some(Duration::ZERO)).unwrap();
    if s.bind(&unspecified(dst, src_port).into()).is_err() {
        return tcp(dst, next_source_port(), port, timeout);
    }
    s.connect_timeout(&SocketAddr::new(dst, port).into(), timeout)
        .is_ok()
}

fn udp(dst: IpAddr, src_port: u16, port: u16, timeout: Duration) -> bool {
    let s = Socket::new(domain(dst), Type::DGRAM, Some(Protocol::UDP)).unwrap();
    if s.bind(&unspecified(dst, src_port).into()).is_err() {
        return udp(dst, next_source_port(), port, timeout);
    }
    let s: UdpSocket = s.into();
    s.connect(SocketAddr::new(dst, port)).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    let _ = s.send(b"diff");
    let mut buf = [0u8; 16];
    matches!(s.recv(&mut buf), Ok(4))
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let word = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += word as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request on a raw socket; the reply is matched by identifier.
/// (The kernel fills in the ICMPv6 checksum; IPv4 replies arrive with
/// their IP header.)
fn ping(dst: IpAddr, timeout: Duration) -> bool {
    let v6 = dst.is_ipv6();
    let (proto, request, reply) = if v6 {
        (Protocol::ICMPV6, 128u8, 129u8)
    } else {
        (Protocol::ICMPV4, 8, 0)
    };
    let s = Socket::new(domain(dst), Type::RAW, Some(proto)).unwrap();
    let id = NEXT_ICMP_ID.fetch_add(1, Ordering::SeqCst).to_be_bytes();
    let mut pkt = vec![request, 0, 0, 0, id[0], id[1], 0, 1, b'd', b'i', b'f', b'f'];
    if !v6 {
        let c = checksum(&pkt).to_be_bytes();
        pkt[2..4].copy_from_slice(&c);
    }
    let to: SockAddr = SocketAddr::new(dst, 0).into();
    if s.send_to(&pkt, &to).is_err() {
        return false;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 256];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        let n = match s.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => break,
        };
        // SAFETY: recv_from initialised the first n bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let icmp = if v6 {
            &data[..]
        } else {
            let ihl = ((data[0] & 0x0f) as usize) * 4;
            &data[ihl.min(data.len())..]
        };
        if icmp.len() >= 8 && icmp[0] == reply && icmp[4..6] == id {
            return true;
        }
    }
    false
}
