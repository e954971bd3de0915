//! The snapshot the agent fills and the formatter reads.
//!
//! Every field is something BIRD 1.6 prints; nothing is derived from a
//! clock here except through `BirdView::now`, so a view renders the same
//! text every time (the tests rely on that).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

/// What Calico's BIRD calls itself (`BIRD_VERSION` of projectcalico/bird,
/// the fork of BIRD 1.6 that calico-node ships). calico-node's status
/// populator stores the text after `BIRD ` as the daemon version.
pub const CALICO_BIRD_VERSION: &str = "v0.3.3+birdv1.6.8";

/// The whole daemon as one socket shows it (BIRD runs one daemon per
/// family: `bird.ctl` answers for IPv4 and `bird6.ctl` for IPv6).
#[derive(Clone, Debug, PartialEq)]
pub struct BirdView {
    /// The version in the greeting and in `show status`.
    pub version: String,
    /// Whether this is the IPv6 daemon (`bird6`): addresses of the other
    /// family in a command are then refused the way BIRD refuses them.
    pub ipv6: bool,
    pub router_id: Ipv4Addr,
    /// The present moment; `since` columns are shown relative to it.
    pub now: SystemTime,
    /// `Last reboot on` of `show status`.
    pub started: SystemTime,
    /// `Last reconfiguration on` of `show status`.
    pub reconfigured: SystemTime,
    /// The last line of `show status`.
    pub daemon: DaemonState,
    /// Set while the daemon recovers from its own graceful restart; then
    /// `show status` has BIRD's `0024` block, which calico-node's readiness
    /// check reads as "restart in progress".
    pub graceful_restart: Option<GracefulRecovery>,
    /// In the order `show protocols` lists them (BIRD: configuration order).
    pub protocols: Vec<ProtocolView>,
    /// The routing table `master`. Routes of one prefix are shown together,
    /// primary first, in the order their prefix first appears here.
    pub routes: Vec<RouteView>,
}

impl Default for BirdView {
    fn default() -> Self {
        BirdView {
            version: CALICO_BIRD_VERSION.to_string(),
            ipv6: false,
            router_id: Ipv4Addr::UNSPECIFIED,
            now: UNIX_EPOCH,
            started: UNIX_EPOCH,
            reconfigured: UNIX_EPOCH,
            daemon: DaemonState::Running,
            graceful_restart: None,
            protocols: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// The closing `0013` line of `show status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DaemonState {
    /// `Daemon is up and running`
    #[default]
    Running,
    /// `Reconfiguration in progress`
    Reconfiguring,
    /// `Shutdown in progress`
    ShuttingDown,
}

/// The daemon's own graceful-restart recovery (`show status`, code 0024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GracefulRecovery {
    /// Protocols that have not yet recovered.
    pub waiting_protocols: u32,
    /// Seconds left on the wait timer.
    pub wait_remaining: u32,
    /// The wait timer's full length in seconds (BIRD's `graceful restart wait`).
    pub wait_total: u32,
}

/// One line of `show protocols` and its `all` block.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolView {
    pub name: String,
    pub proto: ProtoKind,
    /// The routing table; BIRD 1.6 has one, `master`.
    pub table: String,
    pub state: ProtoState,
    /// When `state` last changed.
    pub since: SystemTime,
    /// The info column of a protocol other than BGP (BIRD leaves it empty
    /// for kernel, device, direct and static). For BGP the column is
    /// rendered from [`BgpDetail`] exactly as BIRD does it, and this is not used.
    pub info: String,
    /// `Description:` (Calico's template says `Connection to BGP peer`).
    pub description: Option<String>,
    /// `Message:`, the reason given to the last disable or restart.
    pub message: Option<String>,
    /// `Preference:`; BIRD's defaults are in [`ProtoKind::default_preference`].
    pub preference: u32,
    /// `Input filter:`: `ACCEPT`, `REJECT`, a filter's name or `(unnamed)`.
    pub input_filter: String,
    /// `Output filter:`, like `input_filter`.
    pub output_filter: String,
    /// Route counters; not shown while the protocol is down.
    pub stats: ProtoStats,
    /// Only while the daemon recovers from a graceful restart
    /// ([`BirdView::graceful_restart`]): `GR recovery:` with `pending`
    /// (the protocol holds the recovery) and/or `waiting` (it waits for it).
    pub gr_pending: bool,
    pub gr_waiting: bool,
    /// The BGP part of `show protocols all`; required for `ProtoKind::Bgp`.
    pub bgp: Option<BgpDetail>,
}

impl ProtocolView {
    /// A protocol with BIRD's defaults: table `master`, the kind's default
    /// preference, filters `ACCEPT` in and `REJECT` out, no counters.
    pub fn new(name: &str, proto: ProtoKind, state: ProtoState, since: SystemTime) -> Self {
        ProtocolView {
            name: name.to_string(),
            proto,
            table: "master".to_string(),
            state,
            since,
            info: String::new(),
            description: None,
            message: None,
            preference: proto.default_preference(),
            input_filter: "ACCEPT".to_string(),
            output_filter: "REJECT".to_string(),
            stats: ProtoStats::default(),
            gr_pending: false,
            gr_waiting: false,
            bgp: None,
        }
    }
}

/// The proto column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoKind {
    Bgp,
    Kernel,
    Device,
    Direct,
    Static,
    Pipe,
    Bfd,
}

impl ProtoKind {
    /// The name in the proto column.
    pub fn name(self) -> &'static str {
        match self {
            ProtoKind::Bgp => "BGP",
            ProtoKind::Kernel => "Kernel",
            ProtoKind::Device => "Device",
            ProtoKind::Direct => "Direct",
            ProtoKind::Static => "Static",
            ProtoKind::Pipe => "Pipe",
            ProtoKind::Bfd => "BFD",
        }
    }

    /// BIRD 1.6's default preference for routes of this kind.
    pub fn default_preference(self) -> u32 {
        match self {
            ProtoKind::Bgp => 100,
            ProtoKind::Kernel => 10,
            ProtoKind::Device | ProtoKind::Direct => 240,
            ProtoKind::Static => 200,
            ProtoKind::Pipe | ProtoKind::Bfd => 0,
        }
    }
}

/// The state column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoState {
    Down,
    Start,
    Up,
    /// Up, but routes are not yet being exported to it.
    Wait,
    /// Up, and the table is being fed to it.
    Feed,
    Stop,
    Flush,
}

impl ProtoState {
    pub fn name(self) -> &'static str {
        match self {
            ProtoState::Down => "down",
            ProtoState::Start => "start",
            ProtoState::Up => "up",
            ProtoState::Wait => "wait",
            ProtoState::Feed => "feed",
            ProtoState::Stop => "stop",
            ProtoState::Flush => "flush",
        }
    }

    /// BIRD's "proto_state is up" (up, wait or feed).
    fn is_up(self) -> bool {
        matches!(self, ProtoState::Up | ProtoState::Wait | ProtoState::Feed)
    }

    pub(crate) fn shows_stats(self) -> bool {
        self != ProtoState::Down
    }

    pub(crate) fn shows_session(self) -> bool {
        self.is_up()
    }
}

/// `Routes:` and `Route change stats:` of `show protocols all`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtoStats {
    pub imported: u32,
    /// Routes kept although the import filter rejected them (only with
    /// BIRD's `import keep filtered`; then `Routes:` lists them).
    pub filtered: Option<u32>,
    pub exported: u32,
    pub preferred: u32,
    /// `Import updates:`: all five columns.
    pub import_updates: ChangeCounters,
    /// `Import withdraws:`: BIRD prints `---` for `filtered`.
    pub import_withdraws: ChangeCounters,
    /// `Export updates:`: `---` for `ignored`.
    pub export_updates: ChangeCounters,
    /// `Export withdraws:`: only `received` and `accepted`.
    pub export_withdraws: ChangeCounters,
}

/// One row of `Route change stats:`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeCounters {
    pub received: u32,
    pub rejected: u32,
    pub filtered: u32,
    pub ignored: u32,
    pub accepted: u32,
}

/// The BGP part of a protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct BgpDetail {
    /// The furthest of the incoming and outgoing connections' states.
    /// BIRD shows `Down` instead while the protocol is down, and `Passive`
    /// for an idle passive session.
    pub state: BgpState,
    pub passive: bool,
    pub neighbor_address: IpAddr,
    pub neighbor_as: u32,
    /// Not printed by BIRD 1.6; it decides `internal` or `external`.
    pub local_as: u32,
    pub multihop: bool,
    /// This end treats the neighbor as a route-reflector client.
    pub rr_client: bool,
    pub rs_client: bool,
    /// `Last error:` and the tail of the info column, with BIRD's class
    /// prefix: `Socket: Connection refused`, `Received: Hold timer expired`,
    /// `BGP Error: Bad peer AS`, `Error: Neighbor lost`. `None` after an
    /// administrative shutdown (BIRD shows nothing then either).
    pub last_error: Option<String>,
    /// While the neighbor restarts gracefully and we keep its routes:
    /// `Some(seconds left on the restart timer)`, or `Some(None)` before
    /// the timer runs.
    pub neighbor_restart: Option<Option<u32>>,
    /// While the protocol waits to start again after an error:
    /// `Error wait: remaining/total`.
    pub error_wait: Option<(u32, u32)>,
    /// While the outgoing connection waits to connect:
    /// `Connect delay: remaining/total`.
    pub connect_delay: Option<(u32, u32)>,
    /// What the established session negotiated; shown while the protocol is up.
    pub session: Option<BgpSession>,
}

impl BgpDetail {
    /// A session to `neighbor` in `state`, with nothing else known.
    pub fn new(state: BgpState, neighbor: IpAddr, neighbor_as: u32, local_as: u32) -> Self {
        BgpDetail {
            state,
            passive: false,
            neighbor_address: neighbor,
            neighbor_as,
            local_as,
            multihop: false,
            rr_client: false,
            rs_client: false,
            last_error: None,
            neighbor_restart: None,
            error_wait: None,
            connect_delay: None,
            session: None,
        }
    }
}

/// RFC 4271's states, plus BIRD's `Close`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BgpState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
    Close,
}

impl BgpState {
    pub fn name(self) -> &'static str {
        match self {
            BgpState::Idle => "Idle",
            BgpState::Connect => "Connect",
            BgpState::Active => "Active",
            BgpState::OpenSent => "OpenSent",
            BgpState::OpenConfirm => "OpenConfirm",
            BgpState::Established => "Established",
            BgpState::Close => "Close",
        }
    }
}

/// An established session.
#[derive(Clone, Debug, PartialEq)]
pub struct BgpSession {
    pub neighbor_id: Ipv4Addr,
    pub neighbor_caps: NeighborCaps,
    /// Both ends do 4-octet AS numbers.
    pub as4: bool,
    /// ADD-PATH negotiated: we receive several paths per prefix.
    pub add_path_rx: bool,
    /// ADD-PATH negotiated: we send several paths per prefix.
    pub add_path_tx: bool,
    pub ext_messages: bool,
    pub source_address: IpAddr,
    /// `Hold timer: remaining/negotiated` in seconds.
    pub hold_timer: (u32, u32),
    /// `Keepalive timer: remaining/negotiated` in seconds.
    pub keepalive_timer: (u32, u32),
}

/// What the neighbor's OPEN offered (`Neighbor caps:`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighborCaps {
    pub refresh: bool,
    pub enhanced_refresh: bool,
    pub graceful_restart: GrCapability,
    pub long_lived_gr: GrCapability,
    pub as4: bool,
    pub add_path_rx: bool,
    pub add_path_tx: bool,
    pub ext_messages: bool,
}

/// How far a neighbor supports (long-lived) graceful restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GrCapability {
    #[default]
    None,
    /// Sends the capability without address families: it keeps our routes
    /// while we restart (`restart-aware`, `llgr-aware`).
    Aware,
    /// Also preserves its own forwarding state (`restart-able`, `llgr-able`).
    Able,
}

/// One route of table `master`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteView {
    pub prefix: IpNet,
    pub dest: RouteDest,
    /// The name of the protocol the route came from.
    pub proto: String,
    /// When the route last changed.
    pub since: SystemTime,
    /// The best route for its prefix (BIRD's `*`); one per prefix.
    pub primary: bool,
    /// The BGP neighbor it was learned from; shown when it differs from the gateway.
    pub from: Option<IpAddr>,
    /// The route's preference (BGP 100, static 200, kernel 10, direct 240).
    pub preference: u32,
    /// The `Type:` line of `show route all`.
    pub source: RouteSource,
    /// `Kernel.source` and `Kernel.metric` of a route learned from the kernel.
    pub kernel: Option<KernelAttrs>,
    pub bgp: Option<BgpRouteAttrs>,
    /// Protocols this route is exported to (`show route export NAME`).
    pub exported_to: Vec<String>,
}

impl RouteView {
    /// A route with the defaults for its source: the preference of the
    /// kind of protocol it came from, not exported, no attributes.
    pub fn new(
        prefix: IpNet,
        dest: RouteDest,
        proto: &str,
        source: RouteSource,
        since: SystemTime,
    ) -> Self {
        RouteView {
            prefix,
            dest,
            proto: proto.to_string(),
            since,
            primary: true,
            from: None,
            preference: source.default_preference(),
            source,
            kernel: None,
            bgp: None,
            exported_to: Vec::new(),
        }
    }
}

/// Where a route sends packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteDest {
    /// `via GW on IFACE`
    Via {
        gateway: IpAddr,
        iface: String,
    },
    /// `dev IFACE`
    Device {
        iface: String,
    },
    Blackhole,
    Unreachable,
    Prohibited,
    /// ECMP: `multipath`, then one `via GW on IFACE weight W` line each.
    Multipath(Vec<NextHop>),
}

/// One path of a multipath route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub gateway: IpAddr,
    pub iface: String,
    /// As BIRD shows it (1 unless configured otherwise).
    pub weight: u32,
}

/// BIRD's route source (`Type:` of `show route all`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteSource {
    /// From a static protocol.
    Static,
    /// Learned from the kernel (`inherit`).
    Inherit,
    /// A directly connected network.
    Device,
    /// A static route to an interface.
    StaticDevice,
    Bgp,
}

impl RouteSource {
    pub fn name(self) -> &'static str {
        match self {
            RouteSource::Static => "static",
            RouteSource::Inherit => "inherit",
            RouteSource::Device => "device",
            RouteSource::StaticDevice => "static-device",
            RouteSource::Bgp => "BGP",
        }
    }

    pub fn default_preference(self) -> u32 {
        match self {
            RouteSource::Static | RouteSource::StaticDevice => 200,
            RouteSource::Inherit => 10,
            RouteSource::Device => 240,
            RouteSource::Bgp => 100,
        }
    }
}

/// The kernel attributes of a route learned from the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelAttrs {
    /// The route's kernel protocol number (3 = `boot`, what `ip route add` uses).
    pub source: u32,
    pub metric: u32,
    /// `RTA_PREFSRC`, when the kernel route has one.
    pub prefsrc: Option<IpAddr>,
    /// The route's scope when it is not the one BIRD expects (link for a
    /// device route, universe otherwise): IPv6 device routes, such as
    /// Felix's routes to workloads, show `Kernel.scope: 0`.
    pub scope: Option<u32>,
}

/// The attributes of a BGP route, in the order BIRD shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpRouteAttrs {
    pub origin: Origin,
    /// AS_SEQUENCE, nearest AS first; empty for a route from an iBGP peer
    /// that originated it.
    pub as_path: Vec<u32>,
    /// NEXT_HOP; for IPv6, the global address and optionally the link-local one.
    pub next_hop: Option<IpAddr>,
    pub next_hop_link_local: Option<IpAddr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    /// Standard communities (RFC 1997) as (AS, value).
    pub communities: Vec<(u16, u16)>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// How the next hop resolved (Calico's `gateway recursive`): shown as
    /// `(100/0)`; `None` for a next hop on a directly connected network.
    pub igp_metric: Option<IgpMetric>,
    /// Kept from a neighbor that is restarting gracefully (`(100s)`).
    pub stale: bool,
}

/// The ORIGIN attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    #[default]
    Igp,
    Egp,
    Incomplete,
}

/// The IGP metric of a recursively resolved next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgpMetric {
    Metric(u32),
    /// Resolved through a route without a metric (`/?`).
    Unknown,
    /// Not resolvable (`/-`, and the route is `unreachable`).
    Unresolvable,
}
