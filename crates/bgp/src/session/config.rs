//! What one session is asked to be: the local side of the OPEN, timers, and
//! which optional capabilities to offer.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::wire::{AddPathMode, Capability, Family, Open, AS_TRANS};

/// One peer's session settings. Defaults follow what upstream Calico's BIRD
/// template sets (`connect delay time 1`, `connect retry time 3`,
/// `error wait time 5,60`, `add paths on`, `graceful restart`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    pub peer_as: u32,
    pub router_id: Ipv4Addr,
    /// Hold time we propose; the session uses the smaller of both sides'.
    pub hold_time: u16,
    /// Wait after start before the first outgoing connection.
    pub connect_delay: Duration,
    /// Wait between outgoing connection attempts.
    pub connect_retry: Duration,
    /// After a session error, wait this long before trying again, doubling
    /// up to `error_wait_max` while errors repeat.
    pub error_wait_min: Duration,
    pub error_wait_max: Duration,
    /// Never connect out; only accept.
    pub passive: bool,
    pub families: Vec<Family>,
    /// ADD-PATH mode offered for every family (None: not offered).
    pub add_path: Option<AddPathMode>,
    /// Graceful restart time offered (None: capability not sent).
    pub graceful_restart: Option<Duration>,
    /// Set the Restart State bit (RFC 4724 §3): we have just restarted and
    /// our peers should not wait for our End-of-RIB before sending theirs.
    pub restarting: bool,
    /// Set the Forwarding State bit for every family: the routes we
    /// announced before this OPEN are still forwarded. Implied by
    /// `restarting`. Left clear after a cold start, so a helper drops what
    /// it kept from our previous life at once rather than after the restart
    /// time.
    pub forwarding_preserved: bool,
    pub extended_message: bool,
}

impl SessionConfig {
    pub fn new(local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> Self {
        SessionConfig {
            local_as,
            peer_as,
            router_id,
            hold_time: 240,
            connect_delay: Duration::from_secs(1),
            connect_retry: Duration::from_secs(3),
            error_wait_min: Duration::from_secs(5),
            error_wait_max: Duration::from_secs(60),
            passive: false,
            families: vec![Family::Ipv4Unicast],
            add_path: Some(AddPathMode::Both),
            graceful_restart: Some(Duration::from_secs(120)),
            restarting: false,
            forwarding_preserved: false,
            extended_message: false,
        }
    }

    pub fn is_ibgp(&self) -> bool {
        self.local_as == self.peer_as
    }

    /// The OPEN this session sends.
    pub fn open(&self) -> Open {
        let mut caps: Vec<Capability> = self
            .families
            .iter()
            .map(|f| Capability::Multiprotocol {
                afi: f.afi(),
                safi: f.safi(),
            })
            .collect();
        caps.push(Capability::RouteRefresh);
        if self.extended_message {
            caps.push(Capability::ExtendedMessage);
        }
        if let Some(t) = self.graceful_restart {
            let forwarding = self.restarting || self.forwarding_preserved;
            caps.push(Capability::GracefulRestart {
                restarting: self.restarting,
                restart_time: t.as_secs().min(4095) as u16,
                families: self
                    .families
                    .iter()
                    .map(|f| (f.afi(), f.safi(), forwarding))
                    .collect(),
            });
        }
        caps.push(Capability::FourOctetAs(self.local_as));
        if let Some(mode) = self.add_path {
            caps.push(Capability::AddPath(
                self.families
                    .iter()
                    .map(|f| (f.afi(), f.safi(), mode))
                    .collect(),
            ));
        }
        Open {
            version: 4,
            my_as: u16::try_from(self.local_as).unwrap_or(AS_TRANS),
            hold_time: self.hold_time,
            bgp_id: self.router_id,
            capabilities: caps,
        }
    }
}
