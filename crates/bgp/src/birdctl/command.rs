//! The subset of BIRD 1.6's command grammar that calico-node answers.
//!
//! BIRD parses a command line with its configuration lexer: keywords are
//! lower case, protocol and table names are symbols, `"..."` is a pattern,
//! addresses and prefixes are tokens of their own. Errors come back as
//! `9001 <message>` (`syntax error` when the grammar does not match, which
//! BIRD 1.6 reports without bison's details) or, for `show protocols NAME`,
//! as `9002 NAME is not a protocol`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::view::BirdView;

/// A command line BIRD would accept, reduced to what the formatter needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    ShowStatus,
    ShowProtocols {
        all: bool,
        which: ProtoSelect,
    },
    ShowRoute(RouteQuery),
    /// `restrict` (what `birdc -r` sends first).
    Restrict,
    /// A command that would change the daemon: calico-node's speaker takes
    /// its configuration from the datastore, never from this socket.
    Control,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProtoSelect {
    Every,
    Name(String),
    Pattern(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RouteQuery {
    /// A single network: `Some((net, false))` is exactly that network,
    /// `Some((net, true))` (`for`) the longest one that covers it.
    pub net: Option<(IpNet, bool)>,
    pub verbose: bool,
    pub primary_only: bool,
    pub filtered: bool,
    pub export: Option<(ExportMode, String)>,
    pub protocol: Option<String>,
    /// 0: list, 1 (`stats`): list and count, 2 (`count`): count only.
    pub stats: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExportMode {
    Preexport,
    Export,
    Noexport,
}

/// A refused command: the reply code and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: u16,
    pub text: String,
}

impl Refusal {
    fn parse(text: impl Into<String>) -> Self {
        Refusal {
            code: 9001,
            text: text.into(),
        }
    }

    fn syntax() -> Self {
        Self::parse("syntax error")
    }
}

/// BIRD's receive buffer less two bytes: a command line this long or
/// longer is refused with `9000 Command too long`.
pub(crate) const MAX_COMMAND: usize = 4094;

/// Parses one command line (without its newline).
pub(crate) fn parse(line: &str, view: &BirdView) -> Result<Command, Refusal> {
    let tokens = lex(line, view.ipv6)?;
    let mut p = Parser { t: &tokens, i: 0 };
    let first = match p.next() {
        Some(Tok::Word(w)) => w.as_str(),
        _ => return Err(Refusal::syntax()),
    };
    match first {
        "show" => {}
        "restrict" => return p.end().map(|()| Command::Restrict),
        w if CONTROL.contains(&w) => return Ok(Command::Control),
        _ => return Err(Refusal::syntax()),
    }
    let what = match p.next() {
        Some(Tok::Word(w)) => w.as_str(),
        _ => return Err(Refusal::syntax()),
    };
    match what {
        "status" => p.end().map(|()| Command::ShowStatus),
        "protocols" => show_protocols(&mut p, view),
        "route" => show_route(&mut p, view).map(Command::ShowRoute),
        w if UNSUPPORTED_SHOW.contains(&w) => Err(Refusal::parse(format!(
            "show {w}: not supported by calico-node's BGP speaker"
        ))),
        _ => Err(Refusal::syntax()),
    }
}

/// First words of BIRD's commands that act on the daemon.
const CONTROL: &[&str] = &[
    "configure",
    "down",
    "disable",
    "enable",
    "restart",
    "reload",
    "debug",
    "mrtdump",
    "dump",
    "echo",
    "eval",
    "add",
    "delete",
    "flush",
    "graceful",
];

/// `show` commands of BIRD 1.6 that have no counterpart here.
const UNSUPPORTED_SHOW: &[&str] = &[
    "interfaces",
    "memory",
    "symbols",
    "roa",
    "static",
    "ospf",
    "rip",
    "babel",
    "bfd",
];

/// Words BIRD's lexer returns as keywords wherever they appear, so they
/// can never be a protocol's or a table's name (a subset: the words that
/// commands use, and the names of protocol kinds).
const KEYWORDS: &[&str] = &[
    "show",
    "status",
    "protocols",
    "route",
    "all",
    "for",
    "table",
    "filter",
    "where",
    "primary",
    "filtered",
    "export",
    "preexport",
    "noexport",
    "protocol",
    "stats",
    "count",
    "kernel",
    "device",
    "direct",
    "static",
    "bgp",
    "pipe",
    "bfd",
    "interfaces",
    "memory",
    "symbols",
    "restrict",
    "configure",
    "enable",
    "disable",
    "restart",
    "reload",
    "debug",
    "in",
    "out",
    "as",
    "from",
    "via",
    "on",
    "off",
];

fn show_protocols(p: &mut Parser, view: &BirdView) -> Result<Command, Refusal> {
    let all = p.eat_word("all");
    let which = match p.next() {
        None => {
            return Ok(Command::ShowProtocols {
                all,
                which: ProtoSelect::Every,
            })
        }
        Some(Tok::Text(t)) => ProtoSelect::Pattern(t.clone()),
        Some(Tok::Word(w)) if is_symbol(w) => {
            if !view.protocols.iter().any(|pr| &pr.name == w) {
                return Err(Refusal {
                    code: 9002,
                    text: format!("{w} is not a protocol"),
                });
            }
            ProtoSelect::Name(w.clone())
        }
        Some(_) => return Err(Refusal::syntax()),
    };
    p.end()?;
    Ok(Command::ShowProtocols { all, which })
}

fn show_route(p: &mut Parser, view: &BirdView) -> Result<RouteQuery, Refusal> {
    let mut q = RouteQuery::default();
    let set_net = |q: &mut RouteQuery, net: IpNet, show_for: bool| {
        if q.net.is_some() {
            return Err(Refusal::parse("Only one prefix expected"));
        }
        q.net = Some((net, show_for));
        Ok(())
    };
    while let Some(tok) = p.next() {
        match tok {
            Tok::Ip(ip) => {
                let net = p.pxlen(*ip)?.ok_or_else(Refusal::syntax)?;
                set_net(&mut q, net, false)?;
            }
            Tok::Word(w) => match w.as_str() {
                "for" => {
                    let ip = match p.next() {
                        Some(Tok::Ip(ip)) => *ip,
                        _ => return Err(Refusal::syntax()),
                    };
                    let net = match p.pxlen(ip)? {
                        Some(net) => net,
                        None => IpNet::from(ip),
                    };
                    set_net(&mut q, net, true)?;
                }
                "table" => {
                    let name = p.symbol()?;
                    if name != "master" {
                        return Err(Refusal::parse(format!("{name} is not a table")));
                    }
                }
                "filter" | "where" => {
                    return Err(Refusal::parse(
                        "route filters are not supported by calico-node's BGP speaker",
                    ))
                }
                "all" => q.verbose = true,
                "primary" => q.primary_only = true,
                "filtered" => q.filtered = true,
                "stats" => q.stats = 1,
                "count" => q.stats = 2,
                "export" | "preexport" | "noexport" => {
                    let mode = match w.as_str() {
                        "export" => ExportMode::Export,
                        "preexport" => ExportMode::Preexport,
                        _ => ExportMode::Noexport,
                    };
                    let name = p.protocol(view)?;
                    if q.export.is_some() {
                        return Err(Refusal::parse("Protocol specified twice"));
                    }
                    q.export = Some((mode, name));
                }
                "protocol" => {
                    let name = p.protocol(view)?;
                    if q.protocol.is_some() {
                        return Err(Refusal::parse("Protocol specified twice"));
                    }
                    q.protocol = Some(name);
                }
                _ => return Err(Refusal::syntax()),
            },
            _ => return Err(Refusal::syntax()),
        }
    }
    Ok(q)
}

fn is_symbol(w: &str) -> bool {
    let mut chars = w.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&w)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// A keyword or a symbol.
    Word(String),
    /// A quoted pattern.
    Text(String),
    Ip(IpAddr),
    Num(u32),
    /// One of BIRD's single-character tokens.
    Char(char),
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Option<&'a Tok> {
        let t = self.t.get(self.i);
        self.i += 1;
        t
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.t.get(self.i)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w == word) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn end(&mut self) -> Result<(), Refusal> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Refusal::syntax()),
        }
    }

    fn symbol(&mut self) -> Result<String, Refusal> {
        match self.next() {
            Some(Tok::Word(w)) if is_symbol(w) => Ok(w.clone()),
            _ => Err(Refusal::syntax()),
        }
    }

    /// A symbol that must name a protocol (BIRD checks while parsing).
    fn protocol(&mut self, view: &BirdView) -> Result<String, Refusal> {
        let name = self.symbol()?;
        if view.protocols.iter().any(|p| p.name == name) {
            Ok(name)
        } else {
            Err(Refusal::parse(format!("{name} is not a protocol")))
        }
    }

    /// `/LEN` after an address, if there is one.
    fn pxlen(&mut self, ip: IpAddr) -> Result<Option<IpNet>, Refusal> {
        if self.peek() != Some(&Tok::Char('/')) {
            return Ok(None);
        }
        self.i += 1;
        let len = match self.next() {
            Some(Tok::Num(n)) => *n,
            _ => return Err(Refusal::syntax()),
        };
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        if len > bits {
            return Err(Refusal::parse(format!("Invalid prefix length {len}")));
        }
        let net = IpNet::new(ip, len as u8).expect("length checked");
        if net.network() != ip {
            return Err(Refusal::parse("Invalid prefix"));
        }
        Ok(Some(net))
    }
}

/// BIRD's configuration lexer, as far as commands need it: at each place
/// the longest of its patterns wins, as in flex.
fn lex(line: &str, ipv6: bool) -> Result<Vec<Tok>, Refusal> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b' ' || c == b'\t' {
            i += 1;
            continue;
        }
        if c == b'#' {
            break;
        }
        if c == b'"' {
            match line[i + 1..].find('"') {
                Some(n) => {
                    out.push(Tok::Text(line[i + 1..i + 1 + n].to_string()));
                    i += n + 2;
                    continue;
                }
                None => return Err(Refusal::parse("Unknown character")),
            }
        }
        let rest = &line[i..];
        let v4 = ipv4_len(rest);
        let v6 = ipv6_len(rest);
        let num = rest.bytes().take_while(u8::is_ascii_digit).count();
        let word = word_len(rest);
        let longest = v4.max(v6).max(num).max(word);
        if longest == 0 {
            if b"={}:;,.()+*/%<>~[]?!|-".contains(&c) {
                out.push(Tok::Char(c as char));
                i += 1;
                continue;
            }
            return Err(Refusal::parse("Unknown character"));
        }
        let text = &rest[..longest];
        // Ties go to the rule BIRD's lexer lists first: IPv4, IPv6, number, word.
        let tok = if longest == v4 {
            let a: Ipv4Addr = text
                .parse()
                .map_err(|_| Refusal::parse(format!("Invalid IPv4 address {text}")))?;
            if ipv6 {
                // bird6 lexes a dotted quad as a router ID, which no
                // command here takes.
                return Err(Refusal::syntax());
            }
            Tok::Ip(IpAddr::V4(a))
        } else if longest == v6 {
            if !ipv6 {
                return Err(Refusal::parse(
                    "This is an IPv4 router, therefore IPv6 addresses are not supported",
                ));
            }
            let a: Ipv6Addr = text
                .parse()
                .map_err(|_| Refusal::parse(format!("Invalid IPv6 address {text}")))?;
            Tok::Ip(IpAddr::V6(a))
        } else if longest == num {
            Tok::Num(
                text.parse()
                    .map_err(|_| Refusal::parse("Number out of range"))?,
            )
        } else {
            let w = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\''));
            Tok::Word(w.unwrap_or(text).to_string())
        };
        out.push(tok);
        i += longest;
    }
    Ok(out)
}

/// `{DIGIT}+\.{DIGIT}+\.{DIGIT}+\.{DIGIT}+`
fn ipv4_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    for part in 0..4 {
        if part > 0 {
            if b.get(i) != Some(&b'.') {
                return 0;
            }
            i += 1;
        }
        let d = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if d == 0 {
            return 0;
        }
        i += d;
    }
    i
}

/// `({XIGIT}*::|({XIGIT}*:){3,})({XIGIT}*|IPV4)`: the longest match.
fn ipv6_len(s: &str) -> usize {
    let b = s.as_bytes();
    let hex = |from: usize| {
        b[from..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count()
    };
    let with_tail = |end: usize| end + hex(end).max(ipv4_len(&s[end..]));
    let mut best = 0;
    let h = hex(0);
    if b[h..].starts_with(b"::") {
        best = with_tail(h + 2);
    }
    // `({XIGIT}*:){3,}`: every group takes a whole run of hex digits.
    let (mut at, mut groups) = (0, 0);
    loop {
        let h = hex(at);
        if b.get(at + h) != Some(&b':') {
            break;
        }
        at += h + 1;
        groups += 1;
        if groups >= 3 {
            best = best.max(with_tail(at));
        }
    }
    best
}

/// `{ALPHA}{ALNUM}*` or `'` (ALNUM | `-` | `.` | `:`)* `'`.
fn word_len(s: &str) -> usize {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() => {
            1 + b[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count()
        }
        Some(b'\'') => {
            let n = b[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || b"_-.:".contains(c))
                .count();
            if b.get(1 + n) == Some(&b'\'') {
                n + 2
            } else {
                0
            }
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::birdctl::view::{ProtoKind, ProtoState, ProtocolView};
    use std::time::UNIX_EPOCH;

    fn view() -> BirdView {
        let p = |n: &str, k| ProtocolView::new(n, k, ProtoState::Up, UNIX_EPOCH);
        BirdView {
            protocols: vec![
                p("kernel1", ProtoKind::Kernel),
                p("Mesh_10_0_0_2", ProtoKind::Bgp),
            ],
            ..BirdView::default()
        }
    }

    fn ok(line: &str) -> Command {
        parse(line, &view()).unwrap_or_else(|e| panic!("{line:?}: {e:?}"))
    }

    fn err(line: &str) -> (u16, String) {
        let e = parse(line, &view()).expect_err(line);
        (e.code, e.text)
    }

    fn route(line: &str) -> RouteQuery {
        match ok(line) {
            Command::ShowRoute(q) => q,
            c => panic!("{c:?}"),
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn show_protocols_forms() {
        assert_eq!(
            ok("show protocols"),
            Command::ShowProtocols {
                all: false,
                which: ProtoSelect::Every
            }
        );
        assert_eq!(
            ok("  show\tprotocols   all   Mesh_10_0_0_2 "),
            Command::ShowProtocols {
                all: true,
                which: ProtoSelect::Name("Mesh_10_0_0_2".into())
            }
        );
        assert_eq!(
            ok(r#"show protocols "Mesh*""#),
            Command::ShowProtocols {
                all: false,
                which: ProtoSelect::Pattern("Mesh*".into())
            }
        );
        assert_eq!(
            ok("show protocols 'kernel1'"),
            Command::ShowProtocols {
                all: false,
                which: ProtoSelect::Name("kernel1".into())
            }
        );
    }

    #[test]
    fn errors_are_birds() {
        // All of these were sent to Calico's BIRD 1.6 and answered so.
        assert_eq!(
            err("show protocols Foo"),
            (9002, "Foo is not a protocol".into())
        );
        assert_eq!(err(""), (9001, "syntax error".into()));
        assert_eq!(err("foo"), (9001, "syntax error".into()));
        assert_eq!(err("quit"), (9001, "syntax error".into()));
        assert_eq!(err("SHOW Protocols"), (9001, "syntax error".into()));
        assert_eq!(err("show status now"), (9001, "syntax error".into()));
        assert_eq!(err("show protocols all all"), (9001, "syntax error".into()));
        assert_eq!(
            err("show protocols Mesh_10_0_0_2 all"),
            (9001, "syntax error".into())
        );
        assert_eq!(
            err(r#"show protocols "kernel1"#),
            (9001, "Unknown character".into())
        );
        assert_eq!(
            err("show route protocol Foo"),
            (9001, "Foo is not a protocol".into())
        );
        assert_eq!(
            err("show route export Foo"),
            (9001, "Foo is not a protocol".into())
        );
        assert_eq!(
            err("show route table foo"),
            (9001, "foo is not a table".into())
        );
        assert_eq!(
            err("show route 192.168.10.5"),
            (9001, "syntax error".into())
        );
        assert_eq!(
            err("show route 192.168.10.1/24"),
            (9001, "Invalid prefix".into())
        );
        assert_eq!(
            err("show route 192.168.10.0/33"),
            (9001, "Invalid prefix length 33".into())
        );
        assert_eq!(
            err("show route 300.1.1.1/8"),
            (9001, "Invalid IPv4 address 300.1.1.1".into())
        );
        assert_eq!(
            err("show route for 2001:db8::1"),
            (
                9001,
                "This is an IPv4 router, therefore IPv6 addresses are not supported".into()
            )
        );
        assert_eq!(
            err("show route protocol kernel1 protocol Mesh_10_0_0_2"),
            (9001, "Protocol specified twice".into())
        );
        assert_eq!(
            err("show route for 10.99.0.0/24 for 10.99.0.0/24"),
            (9001, "Only one prefix expected".into())
        );
    }

    #[test]
    fn show_route_arguments() {
        assert_eq!(route("show route"), RouteQuery::default());
        let q = route("show route for 192.168.20.7 all");
        assert_eq!(q.net, Some((net("192.168.20.7/32"), true)));
        assert!(q.verbose);
        let q = route("show route 192.168.20.0/26 protocol Mesh_10_0_0_2 count");
        assert_eq!(q.net, Some((net("192.168.20.0/26"), false)));
        assert_eq!(q.protocol.as_deref(), Some("Mesh_10_0_0_2"));
        assert_eq!(q.stats, 2);
        // The last of stats/count wins, as in BIRD.
        assert_eq!(route("show route count stats").stats, 1);
        let q = route("show route table master primary noexport Mesh_10_0_0_2 all all");
        assert!(q.primary_only && q.verbose);
        assert_eq!(
            q.export,
            Some((ExportMode::Noexport, "Mesh_10_0_0_2".into()))
        );
        assert_eq!(
            route("show route for 10.0.0.0/8").net,
            Some((net("10.0.0.0/8"), true))
        );
    }

    #[test]
    fn ipv6_daemon() {
        let v = BirdView {
            ipv6: true,
            ..view()
        };
        let q = parse("show route for fd00:10:244::1", &v).unwrap();
        let Command::ShowRoute(q) = q else { panic!() };
        assert_eq!(q.net, Some((net("fd00:10:244::1/128"), true)));
        let Command::ShowRoute(q) = parse("show route fd00:10:244::/64", &v).unwrap() else {
            panic!()
        };
        assert_eq!(q.net, Some((net("fd00:10:244::/64"), false)));
        let Command::ShowRoute(q) = parse("show route ::/0", &v).unwrap() else {
            panic!()
        };
        assert_eq!(q.net, Some((net("::/0"), false)));
        let Command::ShowRoute(q) = parse("show route for ::ffff:1.2.3.4", &v).unwrap() else {
            panic!()
        };
        assert_eq!(q.net, Some((net("::ffff:1.2.3.4/128"), true)));
        assert_eq!(
            parse("show route for 10.0.0.1", &v).unwrap_err().text,
            "syntax error"
        );
    }

    #[test]
    fn control_and_unsupported_commands() {
        assert_eq!(ok("restrict"), Command::Restrict);
        assert_eq!(ok("configure"), Command::Control);
        assert_eq!(ok("disable Mesh_10_0_0_2"), Command::Control);
        assert_eq!(
            err("show interfaces"),
            (
                9001,
                "show interfaces: not supported by calico-node's BGP speaker".into()
            )
        );
        assert_eq!(err("show route where net ~ 10.0.0.0/8").0, 9001);
    }

    #[test]
    fn lexer_lengths() {
        assert_eq!(ipv4_len("10.0.0.1/8"), 8);
        assert_eq!(ipv4_len("10.0.0"), 0);
        assert_eq!(ipv6_len("2001:db8::1 x"), 11);
        assert_eq!(ipv6_len("fd00::/64"), 6);
        assert_eq!(ipv6_len("::"), 2);
        assert_eq!(ipv6_len("::1"), 3);
        assert_eq!(ipv6_len("a:b:c:d:e:f:1:2"), 15);
        assert_eq!(ipv6_len("::ffff:1.2.3.4"), 14);
        assert_eq!(ipv6_len("Mesh_1"), 0);
        assert_eq!(ipv6_len("a:b"), 0);
        assert_eq!(word_len("Mesh_10_0_0_2 x"), 13);
        assert_eq!(word_len("'a-b'"), 5);
    }
}
