//! Replies in BIRD 1.6's layout.
//!
//! A reply is a run of lines `CODE-text` (more follows), ` text` (more of
//! the same code as the line before) and one final `CODE text`. The codes
//! are those of BIRD's `doc/reply_codes`. The column layouts and value
//! formats below are BIRD 1.6's, as Calico's fork prints them; the unit
//! tests hold the output of a real one (`testdata/bird16-lab.txt`).

use std::net::{IpAddr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local};
use ipnet::IpNet;

use super::command::{Command, ExportMode, ProtoSelect, RouteQuery};
use super::view::*;

/// BIRD's output line buffer: a line whose text does not fit is replaced
/// by `<line overflow>` with code 8000.
const LINE_SIZE: usize = 512;
/// BIRD's buffer for one attribute of `show route all`.
const MSG_SIZE: usize = 500;
/// BIRD shows a time of day for the last 20 hours, a date before that.
const TIME_OF_DAY_LIMIT: i64 = 20 * 3600;

/// The lines of one reply.
pub(crate) struct Reply {
    buf: Vec<u8>,
    last: Option<u16>,
}

impl Reply {
    pub(crate) fn new() -> Self {
        Reply {
            buf: Vec::new(),
            last: None,
        }
    }

    /// A line with more to follow: `CODE-text`, or ` text` after a line
    /// of the same code.
    pub(crate) fn more(&mut self, code: u16, text: &str) {
        let prefix = if self.last == Some(code) {
            " ".to_string()
        } else {
            format!("{code:04}-")
        };
        if prefix.len() + text.len() + 2 > LINE_SIZE {
            return self.more(8000, "<line overflow>");
        }
        self.push(code, &prefix, text);
    }

    /// The final line, `CODE text`.
    pub(crate) fn end(mut self, code: u16, text: &str) -> Vec<u8> {
        if 5 + text.len() + 2 > LINE_SIZE {
            return self.end(8000, "<line overflow>");
        }
        self.push(code, &format!("{code:04} "), text);
        self.buf
    }

    fn push(&mut self, code: u16, prefix: &str, text: &str) {
        self.buf.extend_from_slice(prefix.as_bytes());
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.push(b'\n');
        self.last = Some(code);
    }
}

pub(crate) fn greeting_for(version: &str) -> Vec<u8> {
    Reply::new().end(1, &format!("BIRD {version} ready."))
}

pub(crate) fn run(view: &BirdView, cmd: &Command) -> Vec<u8> {
    match cmd {
        Command::ShowStatus => show_status(view),
        Command::ShowProtocols { all, which } => show_protocols(view, *all, which),
        Command::ShowRoute(q) => show_route(view, q),
        Command::Restrict => Reply::new().end(16, "Access restricted"),
        Command::Control => Reply::new().end(8007, "Access denied"),
    }
}

// ---------------------------------------------------------------- status

fn show_status(view: &BirdView) -> Vec<u8> {
    let mut r = Reply::new();
    r.more(1000, &format!("BIRD {}", view.version));
    r.more(1011, &format!("Router ID is {}", view.router_id));
    r.more(
        1011,
        &format!("Current server time is {}", datetime(view.now)),
    );
    r.more(1011, &format!("Last reboot on {}", datetime(view.started)));
    r.more(
        1011,
        &format!("Last reconfiguration on {}", datetime(view.reconfigured)),
    );
    if let Some(gr) = &view.graceful_restart {
        r.more(24, "Graceful restart recovery in progress");
        r.more(
            24,
            &format!(
                "  Waiting for {} protocols to recover",
                gr.waiting_protocols
            ),
        );
        r.more(
            24,
            &format!("  Wait timer is {}/{}", gr.wait_remaining, gr.wait_total),
        );
    }
    r.end(
        13,
        match view.daemon {
            DaemonState::Running => "Daemon is up and running",
            DaemonState::Reconfiguring => "Reconfiguration in progress",
            DaemonState::ShuttingDown => "Shutdown in progress",
        },
    )
}

// ------------------------------------------------------------- protocols

fn show_protocols(view: &BirdView, all: bool, which: &ProtoSelect) -> Vec<u8> {
    let chosen: Vec<&ProtocolView> = view
        .protocols
        .iter()
        .filter(|p| match which {
            ProtoSelect::Every => true,
            ProtoSelect::Name(n) => &p.name == n,
            ProtoSelect::Pattern(pat) => pattern_match(pat, &p.name),
        })
        .collect();
    if chosen.is_empty() {
        return Reply::new().end(8003, "No protocols match");
    }
    let mut r = Reply::new();
    r.more(2002, "name     proto    table    state  since       info");
    for p in chosen {
        r.more(
            1002,
            &format!(
                "{:<8} {:<8} {:<8} {:<5}  {:<10}  {}",
                p.name,
                p.proto.name(),
                p.table,
                p.state.name(),
                since(view.now, p.since),
                info_column(p)
            ),
        );
        if all {
            protocol_details(view, p, &mut r);
            r.more(1006, "");
        }
    }
    r.end(0, "")
}

fn info_column(p: &ProtocolView) -> String {
    match (&p.bgp, p.proto) {
        (Some(b), ProtoKind::Bgp) => {
            let err = b.last_error.as_deref().unwrap_or("");
            if p.state == ProtoState::Down {
                err.to_string()
            } else {
                format!("{:<14}{}", bgp_state(p, b), err)
            }
        }
        _ => p.info.clone(),
    }
}

fn bgp_state(p: &ProtocolView, b: &BgpDetail) -> &'static str {
    if p.state == ProtoState::Down {
        "Down"
    } else if b.state == BgpState::Idle && b.passive {
        "Passive"
    } else {
        b.state.name()
    }
}

fn protocol_details(view: &BirdView, p: &ProtocolView, r: &mut Reply) {
    if let Some(d) = &p.description {
        r.more(1006, &format!("  Description:    {d}"));
    }
    if let Some(m) = &p.message {
        r.more(1006, &format!("  Message:        {m}"));
    }
    r.more(1006, &format!("  Preference:     {}", p.preference));
    r.more(1006, &format!("  Input filter:   {}", p.input_filter));
    r.more(1006, &format!("  Output filter:  {}", p.output_filter));
    if view.graceful_restart.is_some() {
        r.more(
            1006,
            &format!(
                "  GR recovery:   {}{}",
                if p.gr_pending { " pending" } else { "" },
                if p.gr_waiting { " waiting" } else { "" }
            ),
        );
    }
    if p.state.shows_stats() {
        protocol_stats(&p.stats, r);
    }
    if let (Some(b), ProtoKind::Bgp) = (&p.bgp, p.proto) {
        bgp_details(p, b, r);
    }
}

fn protocol_stats(s: &ProtoStats, r: &mut Reply) {
    let routes = match s.filtered {
        Some(f) => format!(
            "  Routes:         {} imported, {f} filtered, {} exported, {} preferred",
            s.imported, s.exported, s.preferred
        ),
        None => format!(
            "  Routes:         {} imported, {} exported, {} preferred",
            s.imported, s.exported, s.preferred
        ),
    };
    r.more(1006, &routes);
    r.more(
        1006,
        "  Route change stats:     received   rejected   filtered    ignored   accepted",
    );
    let (iu, iw, eu, ew) = (
        &s.import_updates,
        &s.import_withdraws,
        &s.export_updates,
        &s.export_withdraws,
    );
    r.more(
        1006,
        &format!(
            "    Import updates:     {:>10} {:>10} {:>10} {:>10} {:>10}",
            iu.received, iu.rejected, iu.filtered, iu.ignored, iu.accepted
        ),
    );
    r.more(
        1006,
        &format!(
            "    Import withdraws:   {:>10} {:>10}        --- {:>10} {:>10}",
            iw.received, iw.rejected, iw.ignored, iw.accepted
        ),
    );
    r.more(
        1006,
        &format!(
            "    Export updates:     {:>10} {:>10} {:>10}        --- {:>10}",
            eu.received, eu.rejected, eu.filtered, eu.accepted
        ),
    );
    r.more(
        1006,
        &format!(
            "    Export withdraws:   {:>10}        ---        ---        --- {:>10}",
            ew.received, ew.accepted
        ),
    );
}

fn bgp_details(p: &ProtocolView, b: &BgpDetail, r: &mut Reply) {
    r.more(1006, &format!("  BGP state:          {}", bgp_state(p, b)));
    r.more(
        1006,
        &format!("    Neighbor address: {}", ip(b.neighbor_address)),
    );
    r.more(1006, &format!("    Neighbor AS:      {}", b.neighbor_as));
    if let Some(timer) = b.neighbor_restart {
        r.more(1006, "    Neighbor graceful restart active");
        if let Some(left) = timer {
            r.more(1006, &format!("    {:<15}   {left}/-", "Restart timer:"));
        }
    }
    if p.state == ProtoState::Start {
        if let Some((left, total)) = b.error_wait {
            r.more(1006, &format!("    Error wait:       {left}/{total}"));
        }
        if let Some((left, total)) = b.connect_delay {
            r.more(1006, &format!("    Connect delay:    {left}/{total}"));
        }
    } else if p.state.shows_session() {
        if let Some(s) = &b.session {
            let c = &s.neighbor_caps;
            let gr = |cap, able, aware| match cap {
                GrCapability::Able => able,
                GrCapability::Aware => aware,
                GrCapability::None => "",
            };
            r.more(1006, &format!("    Neighbor ID:      {}", s.neighbor_id));
            r.more(
                1006,
                &format!(
                    "    Neighbor caps:   {}{}{}{}{}{}{}{}",
                    flag(c.refresh, " refresh"),
                    flag(c.enhanced_refresh, " enhanced-refresh"),
                    gr(c.graceful_restart, " restart-able", " restart-aware"),
                    gr(c.long_lived_gr, " llgr-able", " llgr-aware"),
                    flag(c.as4, " AS4"),
                    flag(c.add_path_rx, " add-path-rx"),
                    flag(c.add_path_tx, " add-path-tx"),
                    flag(c.ext_messages, " ext-messages"),
                ),
            );
            r.more(
                1006,
                &format!(
                    "    Session:          {}{}{}{}{}{}{}{}",
                    if b.local_as == b.neighbor_as {
                        "internal"
                    } else {
                        "external"
                    },
                    flag(b.multihop, " multihop"),
                    flag(b.rr_client, " route-reflector"),
                    flag(b.rs_client, " route-server"),
                    flag(s.as4, " AS4"),
                    flag(s.add_path_rx, " add-path-rx"),
                    flag(s.add_path_tx, " add-path-tx"),
                    flag(s.ext_messages, " ext-messages"),
                ),
            );
            r.more(
                1006,
                &format!("    Source address:   {}", ip(s.source_address)),
            );
            r.more(
                1006,
                &format!(
                    "    Hold timer:       {}/{}",
                    s.hold_timer.0, s.hold_timer.1
                ),
            );
            r.more(
                1006,
                &format!(
                    "    Keepalive timer:  {}/{}",
                    s.keepalive_timer.0, s.keepalive_timer.1
                ),
            );
        }
    }
    if let Some(e) = &b.last_error {
        r.more(1006, &format!("    Last error:       {e}"));
    }
}

fn flag(on: bool, text: &'static str) -> &'static str {
    if on {
        text
    } else {
        ""
    }
}

/// BIRD's `patmatch`: `*` matches any run of characters, `?` any one.
pub(crate) fn pattern_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic wildcard matching with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

// ---------------------------------------------------------------- routes

/// Routes of one network, best first.
struct Net<'a> {
    prefix: IpNet,
    routes: Vec<&'a RouteView>,
}

fn networks(view: &BirdView) -> Vec<Net<'_>> {
    let mut nets: Vec<Net> = Vec::new();
    for r in &view.routes {
        match nets.iter_mut().find(|n| n.prefix == r.prefix) {
            Some(n) => n.routes.push(r),
            None => nets.push(Net {
                prefix: r.prefix,
                routes: vec![r],
            }),
        }
    }
    for n in &mut nets {
        // Stable: the primary first, the others as given.
        n.routes.sort_by_key(|r| !r.primary);
    }
    nets
}

#[derive(Default)]
struct Counters {
    shown: u32,
    routes: u32,
    nets: u32,
}

fn show_route(view: &BirdView, q: &RouteQuery) -> Vec<u8> {
    let nets = networks(view);
    let mut r = Reply::new();
    let mut c = Counters::default();
    if let Some((want, show_for)) = q.net {
        let net = if show_for {
            nets.iter()
                .filter(|n| {
                    n.prefix.prefix_len() <= want.prefix_len() && n.prefix.contains(&want.addr())
                })
                .max_by_key(|n| n.prefix.prefix_len())
        } else {
            nets.iter().find(|n| n.prefix == want)
        };
        if let Some(net) = net {
            show_net(view, net, q, &mut c, &mut r);
        }
        // A single network is never counted, only listed (or not).
        return if c.routes > 0 {
            r.end(0, "")
        } else {
            r.end(8001, "Network not in table")
        };
    }
    for net in &nets {
        show_net(view, net, q, &mut c, &mut r);
    }
    if q.stats > 0 {
        r.end(
            14,
            &format!("{} of {} routes for {} networks", c.shown, c.routes, c.nets),
        )
    } else {
        r.end(0, "")
    }
}

fn show_net(view: &BirdView, net: &Net, q: &RouteQuery, c: &mut Counters, r: &mut Reply) {
    let mut label = prefix(net.prefix);
    let mut first = true;
    for route in &net.routes {
        // calico-node keeps no routes its import filters rejected.
        if q.filtered {
            continue;
        }
        c.routes += 1;
        if first {
            c.nets += 1;
            first = false;
        }
        if shown(route, q) {
            c.shown += 1;
            if q.stats < 2 {
                route_lines(view, &label, route, q.verbose, r);
            }
            label.clear();
        }
        if q.primary_only {
            break;
        }
    }
}

fn shown(route: &RouteView, q: &RouteQuery) -> bool {
    if let Some((mode, to)) = &q.export {
        // A protocol is never offered the routes it brought itself.
        if &route.proto == to {
            return false;
        }
        let exported = route.exported_to.iter().any(|p| p == to);
        let pass = match mode {
            ExportMode::Preexport => true,
            ExportMode::Export => exported,
            ExportMode::Noexport => !exported,
        };
        if !pass {
            return false;
        }
    }
    q.protocol.as_ref().is_none_or(|p| &route.proto == p)
}

fn route_lines(view: &BirdView, label: &str, route: &RouteView, verbose: bool, r: &mut Reply) {
    let (via, gateway) = match &route.dest {
        RouteDest::Via { gateway, iface } => {
            (format!("via {} on {iface}", ip(*gateway)), Some(*gateway))
        }
        RouteDest::Device { iface } => (format!("dev {iface}"), None),
        RouteDest::Blackhole => ("blackhole".to_string(), None),
        RouteDest::Unreachable => ("unreachable".to_string(), None),
        RouteDest::Prohibited => ("prohibited".to_string(), None),
        RouteDest::Multipath(_) => ("multipath".to_string(), None),
    };
    let from = match route.from {
        Some(f) if !f.is_unspecified() && Some(f) != gateway => format!(" from {}", ip(f)),
        _ => String::new(),
    };
    r.more(
        1007,
        &format!(
            "{label:<18} {via} [{} {}{from}]{}{}",
            route.proto,
            since(view.now, route.since),
            if route.primary { " *" } else { "" },
            route_info(route)
        ),
    );
    if let RouteDest::Multipath(hops) = &route.dest {
        for h in hops {
            r.more(
                1007,
                &format!("\tvia {} on {} weight {}", ip(h.gateway), h.iface, h.weight),
            );
        }
    }
    if verbose {
        r.more(
            1008,
            &format!("\tType: {} unicast univ", route.source.name()),
        );
        if let Some(b) = &route.bgp {
            bgp_attrs(b, r);
        }
        if let Some(k) = &route.kernel {
            r.more(1012, &format!("\tKernel.source: {}", k.source));
            r.more(1012, &format!("\tKernel.metric: {}", k.metric));
            if let Some(src) = k.prefsrc {
                r.more(1012, &format!("\tKernel.prefsrc: {}", ip(src)));
            }
            if let Some(scope) = k.scope {
                r.more(1012, &format!("\tKernel.scope: {scope}"));
            }
        }
    }
}

/// The tail of a route line: ` (preference)`, and for BGP routes
/// ` (preference/igp metric) [AS<origin AS><origin>]`.
fn route_info(route: &RouteView) -> String {
    let Some(b) = &route.bgp else {
        return format!(" ({})", route.preference);
    };
    let metric = match b.igp_metric {
        None => String::new(),
        Some(IgpMetric::Metric(m)) => format!("/{m}"),
        Some(IgpMetric::Unknown) => "/?".to_string(),
        Some(IgpMetric::Unresolvable) => "/-".to_string(),
    };
    let origin_as = b
        .as_path
        .last()
        .map(|a| format!("AS{a}"))
        .unwrap_or_default();
    let origin = match b.origin {
        Origin::Igp => 'i',
        Origin::Egp => 'e',
        Origin::Incomplete => '?',
    };
    format!(
        " ({}{}{metric}) [{origin_as}{origin}]",
        route.preference,
        if b.stale { "s" } else { "" }
    )
}

fn bgp_attrs(b: &BgpRouteAttrs, r: &mut Reply) {
    let origin = match b.origin {
        Origin::Igp => "IGP",
        Origin::Egp => "EGP",
        Origin::Incomplete => "Incomplete",
    };
    r.more(1012, &format!("\tBGP.origin: {origin}"));
    r.more(1012, &format!("\tBGP.as_path: {}", as_path(&b.as_path)));
    if let Some(nh) = b.next_hop {
        let ll = b
            .next_hop_link_local
            .map(|l| format!(" {}", ip(l)))
            .unwrap_or_default();
        r.more(1012, &format!("\tBGP.next_hop: {}{ll}", ip(nh)));
    }
    if let Some(m) = b.med {
        r.more(1012, &format!("\tBGP.med: {m}"));
    }
    if let Some(lp) = b.local_pref {
        r.more(1012, &format!("\tBGP.local_pref: {lp}"));
    }
    if b.atomic_aggregate {
        r.more(1012, "\tBGP.atomic_aggr: ");
    }
    if !b.communities.is_empty() {
        let items: Vec<String> = b
            .communities
            .iter()
            .map(|(a, v)| format!("({a},{v})"))
            .collect();
        let head = "BGP.community: ";
        let mut lines = wrap(&items, MSG_SIZE - head.len(), MSG_SIZE - 1).into_iter();
        r.more(
            1012,
            &format!("\t{head}{}", lines.next().unwrap_or_default()),
        );
        for line in lines {
            r.more(1012, &format!("\t\t{line}"));
        }
    }
    if let Some(o) = b.originator_id {
        r.more(1012, &format!("\tBGP.originator_id: {o}"));
    }
    if !b.cluster_list.is_empty() {
        let head = "BGP.cluster_list: ";
        let items: Vec<String> = b.cluster_list.iter().map(|c| c.to_string()).collect();
        let lines = wrap(&items, MSG_SIZE - head.len(), MSG_SIZE - 1);
        // BIRD cuts a cluster list after its first line instead of wrapping it.
        let mut text = lines[0].clone();
        if lines.len() > 1 {
            text.push_str(" ...");
        }
        r.more(1012, &format!("\t{head}{text}"));
    }
}

/// BIRD's `int_set_format` loop: items separated by spaces, a new line
/// once the text passed `size - 24` bytes (`first` for the first line).
fn wrap(items: &[String], first: usize, rest: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    let mut limit = first - 24;
    for item in items {
        let line = lines.last_mut().expect("one line at least");
        if line.len() > limit {
            lines.push(String::new());
            limit = rest - 24;
        }
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(item);
    }
    lines
}

/// BIRD's `as_path_format` for a path of one AS_SEQUENCE: cut with ` ...`
/// once the text passed its buffer less 16 bytes.
fn as_path(path: &[u32]) -> String {
    let limit = MSG_SIZE - "BGP.as_path: ".len() - 16;
    let mut out = String::new();
    for asn in path {
        if out.len() > limit {
            out.push_str(" ...");
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&asn.to_string());
    }
    out
}

// ----------------------------------------------------------------- values

/// An address as BIRD prints it: IPv6 compressed as RFC 5952 does, except
/// that an IPv4-compatible address keeps its dotted quad (`::1.2.3.4`).
pub(crate) fn ip(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => ipv6(a),
    }
}

fn ipv6(a: Ipv6Addr) -> String {
    let s = a.segments();
    if s[..6] == [0; 6] && s[6] != 0 {
        let [b0, b1, b2, b3] = [s[6] >> 8, s[6] & 0xff, s[7] >> 8, s[7] & 0xff];
        return format!("::{b0}.{b1}.{b2}.{b3}");
    }
    a.to_string()
}

fn prefix(n: IpNet) -> String {
    format!("{}/{}", ip(n.addr()), n.prefix_len())
}

fn local(t: SystemTime) -> DateTime<Local> {
    // BIRD keeps whole seconds.
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .with_timezone(&Local)
}

/// A `since` column: the local time of day within the last 20 hours, the
/// date before that (BIRD 1.6's `timeformat protocol/route`).
pub(crate) fn since(now: SystemTime, t: SystemTime) -> String {
    let age = match now.duration_since(t) {
        Ok(d) => d.as_secs() as i64,
        Err(_) => 0,
    };
    let fmt = if age < TIME_OF_DAY_LIMIT {
        "%H:%M:%S"
    } else {
        "%Y-%m-%d"
    };
    local(t).format(fmt).to_string()
}

/// `show status`'s times (BIRD's `timeformat base`).
pub(crate) fn datetime(t: SystemTime) -> String {
    local(t).format("%Y-%m-%d %H:%M:%S").to_string()
}
