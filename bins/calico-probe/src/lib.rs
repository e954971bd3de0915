//! Library side of `calico-probe` (see `main.rs` for the CLI). Tests that
//! cannot locate the binary can call [`run`] with the same arguments.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Exit codes.
pub const REACHED: i32 = 0;
pub const NOT_REACHED: i32 = 1;
pub const USAGE: i32 = 2;

const USAGE_TEXT: &str = "usage: calico-probe serve [--tcp PORT[,PORT]] [--udp PORT[,PORT]] [--listen ADDR]\n       calico-probe tcp|udp IP:PORT [--timeout-ms 500] [--bind SRCIP] [--count 1] [--interval-ms 100]";

/// Run the CLI with `args` (without the program name); returns the exit code.
pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("serve") => match parse_serve(&args[1..]) {
            Ok(s) => serve(s),
            Err(e) => usage(&e),
        },
        Some(proto @ ("tcp" | "udp")) => match parse_client(&args[1..]) {
            Ok(c) => {
                let (code, line) = if proto == "tcp" { tcp(&c) } else { udp(&c) };
                println!("{line}");
                code
            }
            Err(e) => usage(&e),
        },
        _ => usage("missing or unknown command"),
    }
}

fn usage(msg: &str) -> i32 {
    eprintln!("calico-probe: {msg}\n{USAGE_TEXT}");
    USAGE
}

struct Serve {
    tcp: Vec<u16>,
    udp: Vec<u16>,
    listen: Option<IpAddr>,
}

struct Client {
    target: SocketAddr,
    timeout: Duration,
    bind: Option<IpAddr>,
    count: u32,
    interval: Duration,
}

fn ports(v: &str) -> Result<Vec<u16>, String> {
    v.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u16>().map_err(|_| format!("bad port {p:?}")))
        .collect()
}

fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn parse_serve(args: &[String]) -> Result<Serve, String> {
    let mut s = Serve {
        tcp: vec![],
        udp: vec![],
        listen: None,
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--tcp" => s.tcp.extend(ports(value(args, &mut i, "--tcp")?)?),
            "--udp" => s.udp.extend(ports(value(args, &mut i, "--udp")?)?),
            "--listen" => {
                let v = value(args, &mut i, "--listen")?;
                s.listen = Some(v.parse().map_err(|_| format!("bad address {v:?}"))?);
            }
            other => return Err(format!("unknown option {other:?}")),
        }
        i += 1;
    }
    if s.tcp.is_empty() && s.udp.is_empty() {
        return Err("serve needs --tcp and/or --udp".into());
    }
    Ok(s)
}

fn parse_client(args: &[String]) -> Result<Client, String> {
    let target = args
        .first()
        .ok_or("missing IP:PORT")?
        .parse::<SocketAddr>()
        .map_err(|_| format!("bad target {:?} (want IP:PORT)", args[0]))?;
    let mut c = Client {
        target,
        timeout: Duration::from_millis(500),
        bind: None,
        count: 1,
        interval: Duration::from_millis(100),
    };
    let mut i = 1;
    while i < args.len() {
        let flag = args[i].clone();
        let v = value(args, &mut i, &flag)?;
        let num = || v.parse::<u64>().map_err(|_| format!("bad number {v:?}"));
        match flag.as_str() {
            "--timeout-ms" => c.timeout = Duration::from_millis(num()?.max(1)),
            "--interval-ms" => c.interval = Duration::from_millis(num()?),
            "--count" => c.count = num()?.max(1) as u32,
            "--bind" => c.bind = Some(v.parse().map_err(|_| format!("bad address {v:?}"))?),
            other => return Err(format!("unknown option {other:?}")),
        }
        i += 1;
    }
    Ok(c)
}

fn token(n: u32) -> String {
    format!("calico-probe {} {n}\n", std::process::id())
}

fn tcp_connect(c: &Client) -> std::io::Result<TcpStream> {
    match c.bind {
        None => TcpStream::connect_timeout(&c.target, c.timeout),
        Some(src) => {
            let sock = Socket::new(
                Domain::for_address(c.target),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            sock.bind(&SocketAddr::new(src, 0).into())?;
            sock.connect_timeout(&c.target.into(), c.timeout)?;
            Ok(sock.into())
        }
    }
}

fn tcp(c: &Client) -> (i32, String) {
    let fail = |why: String| (NOT_REACHED, format!("FAIL tcp {}: {why}", c.target));
    let start = Instant::now();
    let stream = match tcp_connect(c) {
        Ok(s) => s,
        Err(e) => return fail(format!("connect: {e}")),
    };
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_read_timeout(Some(c.timeout));
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(e) => return fail(format!("clone: {e}")),
    });
    let mut writer = stream;
    let mut rtt = Duration::ZERO;
    for n in 1..=c.count {
        if n > 1 {
            std::thread::sleep(c.interval);
        }
        let t = token(n);
        let sent = Instant::now();
        if let Err(e) = writer.write_all(t.as_bytes()) {
            return fail(format!("round trip {n}/{}: send: {e}", c.count));
        }
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(_) if line == t => rtt = sent.elapsed(),
            Ok(0) => return fail(format!("round trip {n}/{}: connection closed", c.count)),
            Ok(_) => return fail(format!("round trip {n}/{}: wrong echo {line:?}", c.count)),
            Err(e) => return fail(format!("round trip {n}/{}: {e}", c.count)),
        }
    }
    let _ = start;
    (
        REACHED,
        format!(
            "OK tcp {} from {local} count={} rtt_ms={:.2}",
            c.target,
            c.count,
            rtt.as_secs_f64() * 1000.0
        ),
    )
}

fn udp(c: &Client) -> (i32, String) {
    let fail = |why: String| (NOT_REACHED, format!("FAIL udp {}: {why}", c.target));
    let src = c.bind.unwrap_or(if c.target.is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    let sock = match UdpSocket::bind(SocketAddr::new(src, 0)) {
        Ok(s) => s,
        Err(e) => return fail(format!("bind {src}: {e}")),
    };
    if let Err(e) = sock.connect(c.target) {
        return fail(format!("connect: {e}"));
    }
    let _ = sock.set_read_timeout(Some(c.timeout));
    let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut rtt = Duration::ZERO;
    let mut buf = [0u8; 2048];
    for n in 1..=c.count {
        if n > 1 {
            std::thread::sleep(c.interval);
        }
        let t = token(n);
        let sent = Instant::now();
        if let Err(e) = sock.send(t.as_bytes()) {
            return fail(format!("round trip {n}/{}: send: {e}", c.count));
        }
        match sock.recv(&mut buf) {
            Ok(len) if &buf[..len] == t.as_bytes() => rtt = sent.elapsed(),
            Ok(_) => return fail(format!("round trip {n}/{}: wrong echo", c.count)),
            Err(e) => return fail(format!("round trip {n}/{}: {e}", c.count)),
        }
    }
    (
        REACHED,
        format!(
            "OK udp {} from {local} count={} rtt_ms={:.2}",
            c.target,
            c.count,
            rtt.as_secs_f64() * 1000.0
        ),
    )
}

fn listen_addrs(listen: Option<IpAddr>) -> Vec<IpAddr> {
    match listen {
        Some(a) => vec![a],
        None => vec![
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::from([0, 0, 0, 0]),
        ],
    }
}

fn bind_tcp(listen: Option<IpAddr>, port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in listen_addrs(listen) {
        match TcpListener::bind(SocketAddr::new(a, port)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap())
}

fn bind_udp(listen: Option<IpAddr>, port: u16) -> std::io::Result<UdpSocket> {
    let mut last = None;
    for a in listen_addrs(listen) {
        match UdpSocket::bind(SocketAddr::new(a, port)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap())
}

fn serve(s: Serve) -> i32 {
    let mut threads = Vec::new();
    for port in &s.tcp {
        let l = match bind_tcp(s.listen, *port) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("calico-probe: bind tcp {port}: {e}");
                return NOT_REACHED;
            }
        };
        threads.push(std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                // One line per connection with the source address the server
                // sees, so tests can observe NAT.
                if let (Ok(peer), Ok(local)) = (conn.peer_addr(), conn.local_addr()) {
                    println!("CONN tcp from {peer} to {local}");
                    let _ = std::io::stdout().flush();
                }
                std::thread::spawn(move || echo_tcp(conn));
            }
        }));
    }
    for port in &s.udp {
        let sock = match bind_udp(s.listen, *port) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("calico-probe: bind udp {port}: {e}");
                return NOT_REACHED;
            }
        };
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }));
    }
    let list = |v: &[u16]| {
        v.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    println!("READY tcp={} udp={}", list(&s.tcp), list(&s.udp));
    let _ = std::io::stdout().flush();
    for t in threads {
        let _ = t.join();
    }
    0
}

fn echo_tcp(mut conn: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_cli() {
        let c = parse_client(&args(
            "198.18.0.2:80 --timeout-ms 300 --bind 198.18.0.1 --count 3",
        ))
        .unwrap();
        assert_eq!(c.target, "198.18.0.2:80".parse().unwrap());
        assert_eq!(c.timeout, Duration::from_millis(300));
        assert_eq!(c.count, 3);
        assert!(parse_client(&args("nope")).is_err());
        let s = parse_serve(&args("--tcp 80,81 --udp 53")).unwrap();
        assert_eq!((s.tcp, s.udp), (vec![80, 81], vec![53]));
        assert_eq!(run(&args("bogus")), USAGE);
    }

    #[test]
    fn echo_round_trip_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || echo_tcp(c));
            }
        });
        let c = parse_client(&args(&format!(
            "127.0.0.1:{port} --count 2 --interval-ms 1"
        )))
        .unwrap();
        let (code, line) = tcp(&c);
        assert_eq!(code, REACHED, "{line}");
        // Nothing listens on port 1: refused.
        let c = parse_client(&args("127.0.0.1:1 --timeout-ms 200")).unwrap();
        assert_eq!(tcp(&c).0, NOT_REACHED);
    }
}
