//! What the speaker's integration tests share: waiting for a condition,
//! for a best-path change, and for sessions to come up.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use calico_bgp::driver::Driver;
use calico_bgp::rib::BestChange;
use calico_bgp::session::State;
use ipnet::IpNet;

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Polls `f` until it holds or `secs` pass; whether it held.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Waits for a best-path change matching `what`; returns it.
pub fn wait_route(
    rx: &mpsc::Receiver<Vec<BestChange>>,
    what: impl Fn(&BestChange) -> bool,
    secs: u64,
) -> Option<BestChange> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while let Ok(batch) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Some(c) = batch.into_iter().find(|c| what(c)) {
            return Some(c);
        }
    }
    None
}

/// How many of the speaker's sessions are Established.
pub fn established(d: &Driver) -> usize {
    d.snapshot(Duration::from_secs(2))
        .map(|s| {
            s.peers
                .iter()
                .filter(|p| p.state == State::Established)
                .count()
        })
        .unwrap_or(0)
}
