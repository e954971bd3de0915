//! A minimal HTTP server for /liveness, /readiness and /metrics. Hand-rolled
//! on std to keep the agent free of a web stack; it answers GETs only.
//!
//! It never blocks on a client: each connection is served on its own
//! thread with read and write timeouts, so a client that connects and sends
//! nothing (or reads nothing) cannot hold up `/liveness` for the others.
//! Connections beyond `MAX_CONNECTIONS` at once are closed at once.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Connections served at the same time.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read (we need only the request line).
const MAX_REQUEST: usize = 8192;

/// Which endpoints a listener answers (health and metrics may be on
/// different ports).
#[derive(Clone, Copy)]
pub struct Routes {
    pub health: bool,
    pub prometheus: bool,
}

/// Binds `addr` and serves until the process exits. If the address is
/// taken (the agent this one replaces has not quite exited yet), it keeps
/// trying every second on a thread of its own rather than never serving.
pub fn serve(addr: String, metrics: Arc<Metrics>, health: bool, prometheus: bool) {
    match TcpListener::bind(&addr) {
        Ok(l) => start(l, &addr, metrics, health, prometheus),
        Err(e) => {
            warn!(%addr, error = %e, "cannot start the health/metrics server yet; retrying");
            let retry = move || loop {
                std::thread::sleep(Duration::from_secs(1));
                if let Ok(l) = TcpListener::bind(&addr) {
                    start(l, &addr, metrics, health, prometheus);
                    return;
                }
            };
            if let Err(e) = std::thread::Builder::new()
                .name("health-bind".into())
                .spawn(retry)
            {
                warn!(error = %e, "cannot start the health/metrics server");
            }
        }
    }
}

fn start(listener: TcpListener, addr: &str, metrics: Arc<Metrics>, health: bool, prometheus: bool) {
    info!(%addr, health, prometheus, "serving health/metrics");
    let routes = Routes { health, prometheus };
    if let Err(e) = spawn_server(listener, metrics, routes, IO_TIMEOUT) {
        warn!(%addr, error = %e, "cannot start the health/metrics server");
    }
}

/// Accepts on its own thread; each connection on a thread of its own.
pub fn spawn_server(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    routes: Routes,
    timeout: Duration,
) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    debug!("too many health/metrics connections; closing one");
                    continue;
                }
                let (metrics, done) = (metrics.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("health-conn".into())
                    .spawn(move || {
                        handle(stream, &metrics, routes, timeout);
                        done.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })?;
    Ok(())
}

fn handle(mut stream: TcpStream, metrics: &Metrics, routes: Routes, timeout: Duration) {
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = answer(path, metrics, routes);
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Reads the request head (to the blank line) so that closing does not
/// reset the connection under unread bytes; `None` on timeout or EOF
/// before a request line.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return None,
        }
        if buf.len() > MAX_REQUEST {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.contains('\n').then_some(text)
}

fn answer(path: &str, metrics: &Metrics, routes: Routes) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain";
    let probe = |ok: bool, yes: &str, no: &str| {
        if ok {
            ("200 OK", TEXT, format!("{yes}\n"))
        } else {
            ("503 Service Unavailable", TEXT, format!("{no}\n"))
        }
    };
    match path {
        "/liveness" if routes.health => probe(metrics.live(), "live", "not live"),
        "/readiness" if routes.health => probe(metrics.ready(), "ready", "not ready"),
        "/metrics" if routes.prometheus => {
            ("200 OK", "text/plain; version=0.0.4", metrics.render())
        }
        _ => ("404 Not Found", TEXT, "not found\n".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn server(timeout: Duration) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let m = Arc::new(Metrics::default());
        m.beat();
        let routes = Routes {
            health: true,
            prometheus: true,
        };
        spawn_server(l, m, routes, timeout).unwrap();
        addr
    }

    /// GET with a client-side deadline: `None` if no full answer in time.
    fn get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    #[test]
    fn silent_clients_do_not_stall_liveness() {
        let addr = server(Duration::from_secs(30));
        // Connect and send nothing, several times over.
        let silent: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let t = Instant::now();
        let answer = get(addr, "/liveness").expect("liveness answered despite silent clients");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nlive\n"), "{answer}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let metrics = get(addr, "/metrics").unwrap();
        assert!(
            metrics.contains("felix_active_local_endpoints 0"),
            "{metrics}"
        );
        drop(silent);
    }

    #[test]
    fn a_silent_client_is_dropped_after_the_read_timeout() {
        let addr = server(Duration::from_millis(200));
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let n = s
            .read_to_end(&mut buf)
            .expect("closed by the server, not timed out here");
        assert_eq!(n, 0);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn requests_in_several_packets_and_unknown_paths() {
        let addr = server(Duration::from_secs(5));
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /readi").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"ness HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 503"), "not ready yet: {out}");
        let nf = get(addr, "/nope").unwrap();
        assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
    }
}
