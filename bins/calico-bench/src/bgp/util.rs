//! What both BGP benchmarks need: network namespaces removed on drop,
//! child processes stopped by PID and reaped, BIRD's control socket, and a
//! process's memory and CPU time from /proc.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// `ip -n NS -batch -` with `input`.
pub fn ip_batch(ns: &str, input: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot run ip -batch")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("ip -batch: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Moves the calling thread into network namespace `ns`.
pub fn enter_netns(ns: &str) -> Result<()> {
    let path = format!("/var/run/netns/{ns}");
    let f = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let me = std::fs::metadata("/proc/thread-self/ns/net")?;
    let target = std::fs::metadata(&path)?;
    if (me.dev(), me.ino()) != (target.dev(), target.ino()) {
        bail!("thread is not in namespace {ns}");
    }
    Ok(())
}

/// Network namespaces this run created; deleted on drop, also on error.
#[derive(Default)]
pub struct Namespaces(Vec<String>);

impl Namespaces {
    pub fn add(&mut self, name: &str) -> Result<()> {
        sh(&["ip", "netns", "add", name])?;
        self.0.push(name.to_string());
        sh(&["ip", "-n", name, "link", "set", "lo", "up"])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.0.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A process this run started: stopped by its PID (SIGTERM, then SIGKILL
/// after `grace`) and reaped, on `stop` or drop.
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
}

impl Daemon {
    pub fn new(name: &str, child: Child) -> Daemon {
        Daemon {
            name: name.to_string(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Err if it already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                self.child = None;
                bail!("{} exited: {st}", self.name);
            }
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        // Our own child, not yet reaped: the PID is still ours.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One command over BIRD's control socket; the reply's lines, up to and
/// including the last one (a four-digit code followed by a space).
pub fn birdc(ctl: &Path, cmd: &str) -> Result<String> {
    let s = UnixStream::connect(ctl).with_context(|| format!("connect {}", ctl.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?; // greeting: 0001 BIRD x.y ready.
    if !line.starts_with("0001") {
        bail!("unexpected greeting {line:?}");
    }
    (&s).write_all(format!("{cmd}\n").as_bytes())?;
    let mut out = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("BIRD closed the control socket");
        }
        out.push_str(&line);
        let b = line.as_bytes();
        if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b' ' {
            if b[0] >= b'8' {
                bail!("birdc {cmd:?}: {}", line.trim());
            }
            return Ok(out);
        }
    }
}

/// The first count of a `show route ... count` reply ("1007-X of Y routes").
pub fn bird_route_count(ctl: &Path, cmd: &str) -> Result<usize> {
    let reply = birdc(ctl, cmd)?;
    let first = reply.lines().next().unwrap_or_default();
    first
        .get(5..)
        .and_then(|t| t.trim_start_matches("Total: ").split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("cannot parse {first:?}"))
}

/// Waits until BIRD answers on its control socket.
pub fn wait_bird(ctl: &Path, daemon: &mut Daemon, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        daemon.check_alive()?;
        if birdc(ctl, "show status").is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} did not answer on {}", daemon.name, ctl.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts BIRD in the foreground inside `ns` (`ip netns exec` execs, so
/// the PID is BIRD's).
pub fn start_bird(name: &str, ns: &str, conf: &Path, ctl: &Path, log: &Path) -> Result<Daemon> {
    let err = std::fs::File::create(log)?;
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "bird", "-f", "-c"])
        .arg(conf)
        .arg("-s")
        .arg(ctl)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .context("cannot start bird")?;
    Ok(Daemon::new(name, child))
}

/// A process's memory and CPU time so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStat {
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub cpu: Duration,
}

pub fn proc_stat(pid: u32) -> Result<ProcStat> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is 3rd,
    // utime 14th, stime 15th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    };
    Ok(ProcStat {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        cpu: Duration::from_micros(ticks * 1_000_000 / hz),
    })
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
