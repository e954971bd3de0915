//! Many simulated BGP peers in one process (as bgperf does), each session
//! from its own source address: a tokio task per peer on one thread in the
//! simulator's namespace, speaking through our wire codec only (no session
//! FSM): connect, OPEN, KEEPALIVE, then the peer's one route and
//! End-of-RIB; afterwards it discards what the receiver sends and answers
//! with a KEEPALIVE every 30 s.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use calico_bgp::session::SessionConfig;
use calico_bgp::wire::{Codec, Family, Message, Nlri, Origin, PathAttributes, Update};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::util::enter_netns;

/// How long a simulated peer waits for Established before trying again.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SimPeer {
    pub address: Ipv4Addr,
    pub prefix: IpNet,
}

#[derive(Default)]
pub struct Progress {
    pub established: AtomicUsize,
    pub announced: AtomicUsize,
    /// Attempts that did not reach Established in time, or failed (each
    /// is retried).
    pub connect_failures: AtomicUsize,
    pub all_established: Mutex<Option<Instant>>,
    /// Sessions that ended after Established (each is made again).
    pub errors: Mutex<Vec<String>>,
}

pub struct Simulator {
    pub progress: Arc<Progress>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Simulator {
    /// Starts the peers, spread evenly over `spread` (zero: all at once).
    pub fn start(
        ns: &str,
        receiver: SocketAddr,
        asn: u32,
        peers: Vec<SimPeer>,
        spread: Duration,
    ) -> Result<Self> {
        let progress = Arc::new(Progress::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (p, ns) = (progress.clone(), ns.to_string());
        let thread = std::thread::Builder::new()
            .name("peersim".into())
            .spawn(move || {
                let rt = enter_netns(&ns).and_then(|_| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(Into::into)
                });
                let rt = match rt {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let total = peers.len();
                    for (i, peer) in peers.into_iter().enumerate() {
                        let p = p.clone();
                        let delay = spread.mul_f64(i as f64 / total as f64);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let mut first = true;
                            loop {
                                let e = run_peer(&peer, receiver, asn, total, &p, first).await;
                                first = false;
                                // A session that ends is made again, as a
                                // real peer would.
                                p.errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("{}: {e:#}", peer.address));
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        });
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                });
                // Dropping the runtime drops every task and its socket.
            })?;
        ready_rx.recv().context("simulator thread")??;
        Ok(Simulator {
            progress,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn connect(peer: &SimPeer, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(peer.address.into(), 0))?;
    s.connect(to).await
}

/// Reads until one whole message is decoded.
async fn next_message(s: &mut TcpStream, codec: &Codec, buf: &mut Vec<u8>) -> Result<Message> {
    loop {
        match codec.decode(buf) {
            Ok(Some((msg, used))) => {
                buf.drain(..used);
                return Ok(msg);
            }
            Ok(None) => {}
            Err(n) => bail!("malformed message from the receiver: {n}"),
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("the receiver closed the session");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connect, OPEN, KEEPALIVE: the session up to Established.
async fn handshake(
    peer: &SimPeer,
    to: SocketAddr,
    asn: u32,
    buf: &mut Vec<u8>,
) -> Result<(TcpStream, Codec)> {
    let mut s = connect(peer, to).await?;
    s.set_nodelay(true)?;
    let ours = SessionConfig::new(asn, asn, peer.address).open();
    let mut out = Vec::new();
    Codec::default().encode(&Message::Open(ours.clone()), &mut out);
    s.write_all(&out).await?;
    let theirs = match next_message(&mut s, &Codec::default(), buf).await? {
        Message::Open(o) => o,
        other => bail!("expected OPEN, got {other:?}"),
    };
    let codec = Codec::negotiate(&ours, &theirs);
    out.clear();
    codec.encode(&Message::Keepalive, &mut out);
    s.write_all(&out).await?;
    loop {
        match next_message(&mut s, &codec, buf).await? {
            Message::Keepalive => return Ok((s, codec)),
            Message::Notification(n) => bail!("NOTIFICATION {n}"),
            _ => {}
        }
    }
}

/// One session from connect to its end (the error that ended it).
async fn run_peer(
    peer: &SimPeer,
    to: SocketAddr,
    asn: u32,
    total: usize,
    p: &Progress,
    first: bool,
) -> anyhow::Error {
    match session(peer, to, asn, total, p, first).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn session(
    peer: &SimPeer,
    to: SocketAddr,
    asn: u32,
    total: usize,
    p: &Progress,
    first: bool,
) -> Result<std::convert::Infallible> {
    let mut buf = Vec::new();
    // Like a peer's connect-retry timer: an attempt that is not
    // Established within OPEN_TIMEOUT (e.g. its connection sits in a full
    // accept queue) is dropped and made again a second later.
    let (mut s, codec) = loop {
        buf.clear();
        match tokio::time::timeout(OPEN_TIMEOUT, handshake(peer, to, asn, &mut buf)).await {
            Ok(Ok(up)) => break up,
            Ok(Err(_)) | Err(_) => {
                p.connect_failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut out = Vec::new();
    if first && p.established.fetch_add(1, Ordering::Relaxed) + 1 == total {
        *p.all_established.lock().unwrap() = Some(Instant::now());
    }
    let attrs = PathAttributes {
        origin: Origin::Igp,
        next_hop: Some(peer.address),
        local_pref: Some(100),
        ..Default::default()
    };
    out.clear();
    codec.encode(
        &Message::Update(Update {
            announced: vec![Nlri::new(peer.prefix, None)],
            attrs,
            ..Default::default()
        }),
        &mut out,
    );
    codec.encode(
        &Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
        &mut out,
    );
    s.write_all(&out).await?;
    if first {
        p.announced.fetch_add(1, Ordering::Relaxed);
    }
    let mut keepalive = tokio::time::interval(Duration::from_secs(30));
    keepalive.tick().await;
    loop {
        tokio::select! {
            m = next_message(&mut s, &codec, &mut buf) => {
                if let Message::Notification(n) = m? {
                    bail!("NOTIFICATION {n}");
                }
            }
            _ = keepalive.tick() => {
                out.clear();
                codec.encode(&Message::Keepalive, &mut out);
                s.write_all(&out).await?;
            }
        }
    }
}
