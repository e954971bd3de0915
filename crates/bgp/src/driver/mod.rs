//! The speaker on real sockets: one thread running a single-threaded tokio
//! runtime. One task owns the [`Speaker`]; each TCP connection has a reader
//! task and a writer task that talk to it through channels. Events that
//! arrive together are applied together before one `commit`, so a peer's
//! table dump becomes a few large kernel batches, not one per UPDATE.
//!
//! Kernel programming is not done here: best-path changes go to the
//! `RouteSink` the agent gives, which runs on the agent's own thread.

mod gtsm;
mod md5;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::rib::{BestChange, ExportPolicy, PeerId};
use crate::session::Side;
use crate::speaker::{Output, PeerConfig, Speaker};
use crate::status::{self, SpeakerStatus};
use crate::wire::PathAttributes;

/// Most bytes one read takes from a connection.
const READ_CHUNK: usize = 65536;

/// Bytes received that one commit takes at most (~28,000 IPv4 routes).
const COMMIT_BYTES: usize = 256 * 1024;

/// Receives best-path changes, in batches.
pub type RouteSink = Box<dyn FnMut(Vec<BestChange>) + Send>;

/// What the agent tells the speaker.
pub enum Command {
    Peers(Vec<PeerConfig>),
    LocalRoutes(Vec<(IpNet, PathAttributes)>),
    Identity {
        router_id: std::net::Ipv4Addr,
        local_as: u32,
        cluster_id: Option<std::net::Ipv4Addr>,
    },
    Policy(Box<dyn ExportPolicy + Send>),
    /// Ask peers for their routes again (after an import policy change).
    RefreshImports,
    /// A full status snapshot, routes included.
    Snapshot(std::sync::mpsc::Sender<SpeakerStatus>),
    Stop,
}

/// Handle to the running speaker thread.
pub struct Driver {
    commands: UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Session status, refreshed by the speaker at least once a second.
    pub sessions: Arc<Mutex<SpeakerStatus>>,
}

impl Driver {
    /// Starts the speaker, listening on `listen` (port 0 picks one).
    pub fn start(
        listen: SocketAddr,
        speaker: Speaker,
        routes: RouteSink,
    ) -> std::io::Result<(Driver, SocketAddr)> {
        let (tx, rx) = unbounded_channel();
        let sessions = Arc::new(Mutex::new(SpeakerStatus::default()));
        let shared = sessions.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bgp".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match bind(listen).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(listener.local_addr());
                    Loop::new(speaker, routes, shared, listener).run(rx).await;
                });
            })?;
        let addr = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the BGP thread died while starting"))??;
        Ok((
            Driver {
                commands: tx,
                thread: Some(thread),
                sessions,
            },
            addr,
        ))
    }

    /// A handle other threads can use to ask for snapshots.
    pub fn handle(&self) -> DriverHandle {
        DriverHandle {
            commands: self.commands.clone(),
        }
    }

    pub fn send(&self, cmd: Command) {
        let _ = self.commands.send(cmd);
    }

    /// A full snapshot (peers and routes), or None if the speaker does not
    /// answer within `timeout`.
    pub fn snapshot(&self, timeout: Duration) -> Option<SpeakerStatus> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(Command::Snapshot(tx));
        rx.recv_timeout(timeout).ok()
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Asks the speaker for snapshots from any thread (e.g. BIRD's control
/// socket server).
#[derive(Clone)]
pub struct DriverHandle {
    commands: UnboundedSender<Command>,
}

impl DriverHandle {
    pub fn snapshot(&self, timeout: Duration) -> Option<SpeakerStatus> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.commands.send(Command::Snapshot(tx)).ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

/// Listens on both families when given the unspecified IPv6 address.
async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

/// Events from connection tasks, tagged with the connection's generation
/// so that events of a connection already dropped are ignored.
enum IoEvent {
    Accepted(TcpStream, SocketAddr),
    Connected(PeerId, u64, TcpStream),
    ConnectFailed(PeerId, u64, String),
    Data(PeerId, Side, u64, Vec<u8>),
    Closed(PeerId, Side, u64, String),
}

struct ConnHandle {
    generation: u64,
    writer: Option<UnboundedSender<Vec<u8>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        // The writer flushes what is queued and closes; the reader stops.
        self.writer = None;
        if let Some(reader) = self.tasks.first() {
            reader.abort();
        }
    }
}

struct Loop {
    speaker: Speaker,
    routes: RouteSink,
    shared: Arc<Mutex<SpeakerStatus>>,
    listener: Arc<TcpListener>,
    /// TCP MD5 keys set on the listening socket, by peer address.
    listener_keys: HashMap<IpAddr, String>,
    conns: HashMap<(PeerId, Side), ConnHandle>,
    generation: u64,
    io_tx: UnboundedSender<IoEvent>,
    io_rx: UnboundedReceiver<IoEvent>,
    last_publish: Instant,
    started: std::time::SystemTime,
    /// Snapshot requests, answered after the next commit so they never
    /// see a change half applied.
    snapshots: Vec<std::sync::mpsc::Sender<SpeakerStatus>>,
}

impl Loop {
    fn new(
        speaker: Speaker,
        routes: RouteSink,
        shared: Arc<Mutex<SpeakerStatus>>,
        listener: TcpListener,
    ) -> Loop {
        let (io_tx, io_rx) = unbounded_channel();
        Loop {
            speaker,
            routes,
            shared,
            listener: Arc::new(listener),
            listener_keys: HashMap::new(),
            conns: HashMap::new(),
            generation: 0,
            io_tx,
            io_rx,
            last_publish: Instant::now() - Duration::from_secs(10),
            started: std::time::SystemTime::now(),
            snapshots: Vec::new(),
        }
    }

    async fn run(mut self, mut commands: UnboundedReceiver<Command>) {
        let accept_tx = self.io_tx.clone();
        let listener = self.listener.clone();
        let acceptor = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((s, addr)) => {
                        if accept_tx.send(IoEvent::Accepted(s, addr)).is_err() {
                            return;
                        }
                    }
                    // E.g. out of file descriptors: don't spin on it.
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept a BGP connection");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        loop {
            let wake = self
                .speaker
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
                .min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Stop) => break,
                    Some(c) => self.on_command(c),
                },
                Some(ev) = self.io_rx.recv() => self.on_io(ev),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            // Take what else is ready before doing the work once, but no
            // more than COMMIT_BYTES of routes: a table arriving at full
            // speed is committed (and reaches the kernel) in slices, so
            // the work lists of a commit stay small.
            let mut taken = 0;
            while taken < COMMIT_BYTES {
                let Ok(ev) = self.io_rx.try_recv() else {
                    break;
                };
                if let IoEvent::Data(_, _, _, bytes) = &ev {
                    taken += bytes.len();
                }
                self.on_io(ev);
            }
            while let Ok(c) = commands.try_recv() {
                if matches!(c, Command::Stop) {
                    acceptor.abort();
                    return;
                }
                self.on_command(c);
            }
            let now = Instant::now();
            self.speaker.handle_timeout(now);
            self.speaker.commit(now);
            self.dispatch();
            if !self.snapshots.is_empty() {
                let snap = status::snapshot(&self.speaker, self.started, true);
                for reply in self.snapshots.drain(..) {
                    let _ = reply.send(snap.clone());
                }
            }
            if now.duration_since(self.last_publish) >= Duration::from_secs(1) {
                self.publish(false);
            }
        }
        acceptor.abort();
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Peers(p) => {
                self.speaker.set_peers(now, p);
                self.publish(false);
            }
            Command::LocalRoutes(r) => self.speaker.set_local_routes(now, &r),
            Command::Identity {
                router_id,
                local_as,
                cluster_id,
            } => self.speaker.set_identity(router_id, local_as, cluster_id),
            Command::Policy(p) => self.speaker.set_policy(p),
            Command::RefreshImports => self.speaker.refresh_imports(now),
            Command::Snapshot(reply) => self.snapshots.push(reply),
            Command::Stop => {}
        }
    }

    fn on_io(&mut self, ev: IoEvent) {
        let now = Instant::now();
        match ev {
            IoEvent::Accepted(stream, addr) => {
                // Outputs are addressed by peer and side only: what is still
                // queued for an earlier incoming connection (a NOTIFICATION
                // and Close after its last bytes) must go to that one, not to
                // the connection that takes its place now.
                self.dispatch();
                let peer = canonical(addr.ip());
                let Some(id) = self.speaker.peer_by_address(peer) else {
                    // Not a configured peer: refuse by closing.
                    return;
                };
                let ttl_security = self.speaker.peer_config(id).and_then(|c| c.ttl_security);
                if let Some(hops) = ttl_security {
                    // The handshake is done, but nothing further from a
                    // sender too far away reaches the session.
                    if let Err(e) = gtsm::apply(&stream, peer, hops) {
                        tracing::warn!(%peer, error = %e, "cannot apply ttlSecurity: connection refused");
                        return;
                    }
                }
                if self.conns.remove(&(id, Side::Incoming)).is_some() {
                    // The peer's earlier connection is dead to it.
                    self.speaker
                        .closed(now, id, Side::Incoming, "Replaced by a new connection");
                    self.dispatch();
                }
                self.attach(id, Side::Incoming, stream);
                self.speaker.connected(now, id, Side::Incoming);
            }
            IoEvent::Connected(id, generation, stream) => {
                if !self.current(id, Side::Outgoing, generation) {
                    return;
                }
                self.attach(id, Side::Outgoing, stream);
                self.speaker.connected(now, id, Side::Outgoing);
            }
            IoEvent::ConnectFailed(id, generation, reason) => {
                if self.current(id, Side::Outgoing, generation) {
                    self.conns.remove(&(id, Side::Outgoing));
                    self.speaker.closed(now, id, Side::Outgoing, &reason);
                }
            }
            IoEvent::Data(id, side, generation, bytes) => {
                if self.current(id, side, generation) {
                    self.speaker.received(now, id, side, &bytes);
                }
            }
            IoEvent::Closed(id, side, generation, reason) => {
                if self.current(id, side, generation) {
                    self.conns.remove(&(id, side));
                    self.speaker.closed(now, id, side, &reason);
                }
            }
        }
    }

    fn current(&self, id: PeerId, side: Side, generation: u64) -> bool {
        self.conns
            .get(&(id, side))
            .is_some_and(|c| c.generation == generation)
    }

    fn dispatch(&mut self) {
        let mut routes = Vec::new();
        while let Some(out) = self.speaker.poll_output() {
            match out {
                Output::Connect(id) => self.connect(id),
                Output::Send(id, side, bytes) => {
                    if let Some(w) = self.conns.get(&(id, side)).and_then(|c| c.writer.as_ref()) {
                        let _ = w.send(bytes);
                    }
                }
                Output::Close(id, side) => {
                    self.conns.remove(&(id, side));
                }
                Output::Routes(c) if routes.is_empty() => routes = c,
                Output::Routes(c) => routes.extend(c),
                Output::PeersChanged => self.set_listener_keys(),
            }
        }
        if !routes.is_empty() {
            (self.routes)(routes);
        }
    }

    /// Opens an outgoing connection in a task; its result comes back as an
    /// event. The handle is registered now, so a Close before the connect
    /// completes discards it.
    fn connect(&mut self, id: PeerId) {
        let Some(cfg) = self.speaker.peer_config(id) else {
            return;
        };
        self.generation += 1;
        let generation = self.generation;
        let addr = SocketAddr::new(cfg.address, cfg.port);
        let security = Security {
            password: cfg.password.clone(),
            ttl_security: cfg.ttl_security,
        };
        let source = cfg.source_address;
        let tx = self.io_tx.clone();
        let task = tokio::spawn(async move {
            let ev = match open(addr, source, &security).await {
                Ok(s) => IoEvent::Connected(id, generation, s),
                Err(e) => IoEvent::ConnectFailed(id, generation, format!("Socket: {e}")),
            };
            let _ = tx.send(ev);
        });
        self.conns.insert(
            (id, Side::Outgoing),
            ConnHandle {
                generation,
                writer: None,
                tasks: vec![task],
            },
        );
    }

    /// Starts the reader and writer tasks of an open connection.
    fn attach(&mut self, id: PeerId, side: Side, stream: TcpStream) {
        let generation = match self.conns.get(&(id, side)) {
            Some(c) if side == Side::Outgoing => c.generation,
            _ => {
                self.generation += 1;
                self.generation
            }
        };
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = stream.into_split();
        let tx = self.io_tx.clone();
        let reader = tokio::spawn(async move {
            // A buffer only while there is something to read: a thousand
            // idle sessions hold none.
            let reason = loop {
                if let Err(e) = rd.readable().await {
                    break format!("Socket: {e}");
                }
                let mut buf = Vec::with_capacity(READ_CHUNK);
                match rd.try_read_buf(&mut buf) {
                    Ok(0) => break "Connection closed".to_string(),
                    Ok(n) => {
                        if n < READ_CHUNK / 4 {
                            buf.shrink_to_fit();
                        }
                        if tx.send(IoEvent::Data(id, side, generation, buf)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => break format!("Socket: {e}"),
                }
            };
            let _ = tx.send(IoEvent::Closed(id, side, generation, reason));
        });
        let (wtx, mut wrx) = unbounded_channel::<Vec<u8>>();
        let writer = tokio::spawn(async move {
            while let Some(bytes) = wrx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        self.conns.insert(
            (id, side),
            ConnHandle {
                generation,
                writer: Some(wtx),
                tasks: vec![reader, writer],
            },
        );
    }

    /// Makes the listening socket's TCP MD5 keys the configured peers'
    /// passwords: new and changed ones are set, and those of peers that
    /// lost their password or went are deleted (otherwise the peer's
    /// unsigned connections would be dropped for good).
    fn set_listener_keys(&mut self) {
        let dual_stack = self.listener.local_addr().is_ok_and(|a| a.is_ipv6());
        let wanted: HashMap<IpAddr, String> = self
            .speaker
            .peers()
            .filter_map(|(_, cfg, _)| {
                let addr = match cfg.address {
                    IpAddr::V4(v4) if dual_stack => IpAddr::V6(v4.to_ipv6_mapped()),
                    other => other,
                };
                Some((addr, cfg.password.clone()?))
            })
            .collect();
        for addr in self
            .listener_keys
            .keys()
            .filter(|a| !wanted.contains_key(a))
        {
            // An empty key deletes the address's key.
            if let Err(e) = md5::set_key(&*self.listener, *addr, &[]) {
                tracing::warn!(peer = %addr, error = %e, "cannot delete the TCP MD5 key on the listening socket");
            }
        }
        for (addr, key) in &wanted {
            if self.listener_keys.get(addr) == Some(key) {
                continue;
            }
            if let Err(e) = md5::set_key(&*self.listener, *addr, key.as_bytes()) {
                tracing::warn!(peer = %addr, error = %e, "cannot set the TCP MD5 key on the listening socket");
            }
        }
        self.listener_keys = wanted;
    }

    fn publish(&mut self, with_routes: bool) {
        self.last_publish = Instant::now();
        let snap = status::snapshot(&self.speaker, self.started, with_routes);
        if let Ok(mut s) = self.shared.lock() {
            *s = snap;
        }
    }
}

/// What an outgoing connection is protected with.
struct Security {
    /// TCP MD5 key.
    password: Option<String>,
    /// GTSM hops.
    ttl_security: Option<u8>,
}

/// Opens a TCP connection, bound to `source`, signed and TTL-protected as
/// `security` says.
async fn open(
    addr: SocketAddr,
    source: Option<IpAddr>,
    security: &Security,
) -> std::io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(src) = source {
        sock.bind(SocketAddr::new(src, 0))?;
    }
    if let Some(p) = &security.password {
        md5::set_key(&sock, addr.ip(), p.as_bytes())?;
    }
    if let Some(hops) = security.ttl_security {
        gtsm::apply(&sock, addr.ip(), hops)?;
    }
    match tokio::time::timeout(Duration::from_secs(5), sock.connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Connection timed out",
        )),
    }
}

/// An IPv4 peer accepted on a dual-stack socket shows as ::ffff:a.b.c.d.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::session::SessionConfig;
    use crate::wire::{Codec, Message};

    /// Reads one whole message from `s`; None at EOF or after 2 s.
    async fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Message> {
        loop {
            if let Ok(Some((m, used))) = Codec::default().decode(buf) {
                buf.drain(..used);
                return Some(m);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk));
            match read.await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// A peer's last bytes are junk and it reconnects at once, all seen in
    /// one batch of events: the NOTIFICATION and Close queued for the old
    /// connection must not go to the new one, which gets our OPEN.
    #[test]
    fn outputs_for_a_replaced_connection_never_reach_its_successor() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let me = Ipv4Addr::new(10, 0, 0, 1);
            let mut session = SessionConfig::new(64512, 64512, me);
            session.passive = true;
            let peer = PeerConfig {
                name: "Node_127_0_0_1".into(),
                address: "127.0.0.1".parse().unwrap(),
                port: 179,
                session,
                rr_client: false,
                keep_next_hop: false,
                next_hop_self: false,
                local_v4: None,
                local_v6: None,
                source_address: None,
                password: None,
                allow_local_as: 0,
                ttl_security: None,
            };
            let speaker = Speaker::new(me, 64512, None);
            let mut lp = Loop::new(speaker, Box::new(|_| {}), Arc::default(), listener);
            lp.on_command(Command::Peers(vec![peer]));
            lp.dispatch();
            let id = lp.speaker.peer_by_address(addr.ip()).unwrap();

            let mut old = TcpStream::connect(addr).await.unwrap();
            let (s, a) = lp.listener.accept().await.unwrap();
            lp.on_io(IoEvent::Accepted(s, a));
            lp.dispatch();
            let mut buf = Vec::new();
            let first = read_message(&mut old, &mut buf).await;
            assert!(matches!(first, Some(Message::Open(_))), "{first:?}");
            let generation = lp.conns[&(id, Side::Incoming)].generation;

            // One batch: junk on the old connection, its close, a new one.
            lp.on_io(IoEvent::Data(id, Side::Incoming, generation, vec![0; 19]));
            lp.on_io(IoEvent::Closed(
                id,
                Side::Incoming,
                generation,
                "Connection closed".into(),
            ));
            let mut new = TcpStream::connect(addr).await.unwrap();
            let (s, a) = lp.listener.accept().await.unwrap();
            lp.on_io(IoEvent::Accepted(s, a));
            lp.dispatch();
            let mut buf = Vec::new();
            let first = read_message(&mut new, &mut buf).await;
            assert!(
                matches!(first, Some(Message::Open(_))),
                "the new connection gets our OPEN, not the old one's end: {first:?}"
            );
            assert!(lp.conns.contains_key(&(id, Side::Incoming)), "and stays");
        });
    }
}
