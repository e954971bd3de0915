//! Ports of projectcalico/calico's readers of BIRD's socket, for tests.
//!
//! Each function keeps the upstream Go's logic, line for line, over the
//! bytes a connection would deliver (instead of reading the connection):
//! - `scan_bird_peers`: `calicoctl node status`
//!   (calicoctl/calicoctl/commands/node/status.go, `scanBIRDPeers` and
//!   `bgpPeer.unmarshalBIRD`), also node/pkg/health/bird/bird.go's copy;
//! - `bird_gr_in_progress`: calico-node's readiness check
//!   (node/pkg/health/bird/bird.go, the `show status` scan);
//! - `scan_bird_status`, `complete_peer`, `scan_bird_routes`: the
//!   `CalicoNodeStatus` populators (node/pkg/status/populators/
//!   bird_status.go, peers.go `complete`, route.go). route.go matches lines
//!   with regular expressions; `route_fields` does what they match, for
//!   lines of BIRD's layout.

/// `bufio.Scanner` with `ScanLines`: lines without `\n` and a trailing `\r`.
fn scan_lines(out: &[u8]) -> impl Iterator<Item = String> + '_ {
    let text = std::str::from_utf8(out).expect("BIRD speaks ASCII");
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
}

/// Go's `strings.Fields`.
fn fields(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct BgpPeer {
    pub peer_ip: String,
    pub peer_type: String,
    pub state: String,
    pub since: String,
    pub bgp_state: String,
    pub info: String,
}

const BIRD_EXPECTED_HEADINGS: [&str; 6] = ["name", "proto", "table", "state", "since", "info"];

/// `^(Global|Node|Mesh)_(.+)$`, then the type's display name.
fn bgp_peer_name(name: &str) -> Option<(&'static str, &str)> {
    let (kind, rest) = name.split_once('_')?;
    let display = match kind {
        "Global" => "global",
        "Mesh" => "node-to-node mesh",
        "Node" => "node specific",
        _ => return None,
    };
    (!rest.is_empty()).then_some((display, rest))
}

fn unmarshal_bird(line: &str, ip_sep: &str) -> Option<BgpPeer> {
    let columns = fields(line);
    if columns.len() < 6 {
        return None;
    }
    if columns[1] != "BGP" {
        return None;
    }
    let (peer_type, ip) = bgp_peer_name(columns[0])?;
    let mut b = BgpPeer {
        peer_ip: ip.replace('_', ip_sep),
        peer_type: peer_type.to_string(),
        state: columns[3].to_string(),
        since: columns[4].to_string(),
        bgp_state: columns[5].to_string(),
        info: String::new(),
    };
    if columns.len() > 6 {
        b.info = columns[6..].join(" ");
    }
    Some(b)
}

pub(crate) fn scan_bird_peers(ipv: &str, out: &[u8]) -> Result<Vec<BgpPeer>, String> {
    let ip_sep = if ipv == "6" { ":" } else { "." };
    let mut peers = Vec::new();
    for s in scan_lines(out) {
        if s.starts_with("0000") {
            break;
        } else if s.starts_with("0001") {
            // BIRD is ready.
        } else if s.starts_with("2002") {
            if fields(&s[5..]) != BIRD_EXPECTED_HEADINGS {
                return Err("unknown BIRD table output format".into());
            }
        } else if let Some(row) = s.strip_prefix("1002") {
            peers.extend(unmarshal_bird(&row[1..], ip_sep));
        } else if let Some(row) = s.strip_prefix(' ') {
            peers.extend(unmarshal_bird(row, ip_sep));
        } else {
            return Err("unexpected output line from BIRD".into());
        }
    }
    Ok(peers)
}

/// calico-node's readiness: is BIRD recovering from a graceful restart?
pub(crate) fn bird_gr_in_progress(out: &[u8]) -> Result<bool, String> {
    for s in scan_lines(out) {
        if s.starts_with("0013") {
            break;
        } else if s.starts_with("0001") || s.starts_with("1000") || s.starts_with("1011") {
        } else if s.starts_with("0024") {
            return Ok(true);
        } else if s.starts_with(' ') {
        } else {
            return Err(format!("unexpected output line from BIRD: '{s}'"));
        }
    }
    Ok(false)
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct BirdStatus {
    pub ready: bool,
    pub version: String,
    pub router_id: String,
    pub server_time: String,
    pub last_boot_time: String,
    pub last_reconfig_time: String,
}

impl BirdStatus {
    fn unmarshal_bird(&mut self, line: &str) -> bool {
        if line.contains("BIRD") && line.contains("ready") {
            self.ready = true;
        } else if line.starts_with("BIRD v") {
            self.version = line.trim_start_matches("BIRD ").to_string();
        } else if let Some(a) = line.strip_prefix("Router ID is ") {
            self.router_id = a.to_string();
        } else if let Some(a) = line.strip_prefix("Current server time is ") {
            self.server_time = a.to_string();
        } else if let Some(a) = line.strip_prefix("Last reboot on ") {
            self.last_boot_time = a.to_string();
        } else if let Some(a) = line.strip_prefix("Last reconfiguration on ") {
            self.last_reconfig_time = a.to_string();
        } else {
            return false;
        }
        true
    }
}

pub(crate) fn scan_bird_status(out: &[u8]) -> BirdStatus {
    let mut status = BirdStatus::default();
    for s in scan_lines(out) {
        if s.starts_with("0013") {
            break;
        } else if s.starts_with("0001") || s.starts_with("1000") || s.starts_with("1011") {
            status.unmarshal_bird(&s[5..]);
        } else if let Some(rest) = s.strip_prefix(' ') {
            status.unmarshal_bird(rest);
        } else {
            break; // upstream logs a warning and stops
        }
    }
    status
}

/// peers.go `complete`: the BGP state and neighbor address from
/// `show protocols all NAME` (the reply alone: upstream's first scanner
/// has consumed the lines before it).
pub(crate) fn complete_peer(out: &[u8]) -> (String, String) {
    let get_value = |s: &str, key: &str| {
        s.contains(key)
            .then(|| s.replace(key, " ").trim().to_string())
    };
    let (mut state, mut ip) = (String::new(), String::new());
    for s in scan_lines(out) {
        if s.starts_with("0000") {
            break;
        } else if let Some(v) = get_value(&s, "BGP state:") {
            state = v;
        } else if let Some(v) = get_value(&s, "Neighbor address:") {
            ip = v;
        }
    }
    (state, ip)
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Route {
    pub dest: String,
    pub gateway: String,
    pub iface: String,
    pub learned_from: String,
    pub primary: bool,
}

/// What route.go's regular expressions capture, e.g. for `via`:
/// `(?P<dest>\S*)\s*via\s(?P<gateway>\S*)\s*on\s(?P<iface>.*)\s\[(?P<from>\S*)\s.*\].*`
/// (`dest` is the first field when the line does not start with a blank,
/// `iface` runs to the ` [` that opens `[proto time]`).
fn route_fields(line: &str, word: &str) -> Option<(String, String, String, String)> {
    let dest = if line.starts_with(char::is_whitespace) {
        ""
    } else {
        line.split_whitespace().next()?
    };
    let after = line[dest.len()..].trim_start();
    let rest = after.strip_prefix(word)?;
    let (gateway, rest) = if word == "via" {
        let (g, rest) = rest.strip_prefix(' ')?.split_once(char::is_whitespace)?;
        (g, rest.trim_start().strip_prefix("on")?)
    } else {
        ("", rest)
    };
    let rest = rest.strip_prefix(' ')?;
    // `\[(?P<from>\S*)\s.*\]`
    let bracket_ok = |b: &str| {
        b.find(char::is_whitespace)
            .is_some_and(|ws| b[ws..].contains(']'))
    };
    let (iface, bracket) = if word == "via" || word == "dev" {
        // `(?P<iface>.*)\s\[`: greedy, so the last ` [` that fits.
        let open = rest
            .match_indices(" [")
            .map(|(i, _)| i)
            .filter(|i| bracket_ok(&rest[i + 2..]))
            .last()?;
        (&rest[..open], &rest[open + 2..])
    } else {
        let b = rest.strip_prefix('[')?;
        if !bracket_ok(b) {
            return None;
        }
        ("", b)
    };
    let from = bracket.split_whitespace().next()?;
    Some((dest.into(), gateway.into(), iface.into(), from.into()))
}

pub(crate) fn scan_bird_routes(out: &[u8]) -> Result<Vec<Route>, String> {
    let mut routes = Vec::new();
    let mut previous_dest = String::new();
    for s in scan_lines(out) {
        let line = if s.starts_with("0000") {
            break;
        } else if s.starts_with("0001") {
            continue;
        } else if s.starts_with("1007") {
            &s[5..]
        } else if let Some(rest) = s.strip_prefix(' ') {
            rest
        } else {
            return Err(format!("unexpected output line from BIRD: {s}"));
        };
        let mut r = Route::default();
        let m = if line.contains(" via ") {
            route_fields(line, "via")
        } else if line.contains(" dev ") {
            route_fields(line, "dev")
        } else if line.contains(" blackhole ") {
            route_fields(line, "blackhole")
        } else if line.contains(" unreachable ") {
            route_fields(line, "unreachable")
        } else {
            None
        };
        match m {
            Some((dest, gateway, iface, from)) => {
                r.dest = dest;
                r.gateway = if gateway.is_empty() {
                    "N/A".into()
                } else {
                    gateway
                };
                r.iface = if line.contains(" via ") || line.contains(" dev ") {
                    iface
                } else if line.contains(" blackhole ") {
                    "blackhole".into()
                } else {
                    "unreachable".into()
                };
                r.learned_from = from;
            }
            None if line.contains(" via ")
                || line.contains(" dev ")
                || line.contains(" blackhole ")
                || line.contains(" unreachable ") =>
            {
                continue; // upstream: "Failed to parse", the line is dropped
            }
            None => {}
        }
        if r.dest.is_empty() {
            if previous_dest.is_empty() {
                continue;
            }
            r.dest = previous_dest.clone();
        }
        if line.contains("] *") {
            r.primary = true;
        }
        previous_dest = r.dest.clone();
        routes.push(r);
    }
    Ok(routes)
}
