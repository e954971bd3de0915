//! A minimal HTTP server for /liveness, /readiness and /metrics. Hand-rolled
//! on std to keep the agent free of a web stack; it answers GETs only.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use tracing::{info, warn};

use crate::metrics::Metrics;

fn respond(stream: &mut std::net::TcpStream, status: &str, content_type: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Serves until the process exits. `paths` selects which endpoints this
/// listener answers (health and metrics may be on different ports).
pub fn serve(addr: String, metrics: Arc<Metrics>, health: bool, prometheus: bool) {
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, error = %e, "cannot start the health/metrics server");
            return;
        }
    };
    info!(%addr, health, prometheus, "serving health/metrics");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut stream) = conn else { continue };
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("");
            match path {
                "/liveness" if health => {
                    if metrics.live() {
                        respond(&mut stream, "200 OK", "text/plain", "live\n")
                    } else {
                        respond(
                            &mut stream,
                            "503 Service Unavailable",
                            "text/plain",
                            "not live\n",
                        )
                    }
                }
                "/readiness" if health => {
                    if metrics.ready() {
                        respond(&mut stream, "200 OK", "text/plain", "ready\n")
                    } else {
                        respond(
                            &mut stream,
                            "503 Service Unavailable",
                            "text/plain",
                            "not ready\n",
                        )
                    }
                }
                "/metrics" if prometheus => respond(
                    &mut stream,
                    "200 OK",
                    "text/plain; version=0.0.4",
                    &metrics.render(),
                ),
                _ => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
            }
        }
    });
}
