//! BGP receive benchmarks: `bgp-receive` (one BIRD peer sending 100,000
//! routes) and `bgp-mesh` (999 simulated peers, one route each), each with
//! calico-rs and BIRD 2 as the receiver, side by side.

pub mod kwatch;
pub mod mesh;
pub mod peersim;
pub mod receive;
pub mod receiver;
pub mod util;

use std::io::BufRead;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use util::{start_bird, wait_bird, Daemon};

/// Which receiver a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    CalicoRs,
    Bird,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::CalicoRs => "calico-rs",
            Kind::Bird => "bird2",
        }
    }

    pub fn parse_list(s: &str) -> Result<Vec<Kind>> {
        s.split(',')
            .map(|k| match k {
                "calico-rs" => Ok(Kind::CalicoRs),
                "bird" | "bird2" => Ok(Kind::Bird),
                other => bail!("unknown receiver {other:?} (calico-rs, bird)"),
            })
            .collect()
    }
}

/// A running receiver in its namespace.
pub struct Receiver {
    pub daemon: Daemon,
    /// BIRD's control socket.
    pub ctl: Option<PathBuf>,
    /// Lines the calico-rs receiver printed, with when they arrived.
    lines: Arc<Mutex<Vec<(String, Instant)>>>,
    /// `perf record` of the receiver, when BGP_BENCH_PERF names an output
    /// directory (a profiling aid; stopped before the receiver).
    perf: Option<Daemon>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut p) = self.perf.take() {
            p.stop();
        }
        self.daemon.stop();
    }
}

impl Receiver {
    /// The calico-rs receiver (this binary, `bgp-receiver`), once listening.
    pub fn calico(
        ns: &str,
        local: Ipv4Addr,
        peers: &[Ipv4Addr],
        expect: usize,
        dir: &Path,
    ) -> Result<Receiver> {
        let peers_file = dir.join("peers.txt");
        let text: String = peers.iter().map(|p| format!("{p}\n")).collect();
        std::fs::write(&peers_file, text)?;
        let log: Stdio = if std::env::var_os("BGP_BENCH_DEBUG").is_some() {
            Stdio::inherit()
        } else {
            std::fs::File::create(dir.join("calico-rs.log"))?.into()
        };
        let mut child = Command::new(std::env::current_exe()?)
            .arg("bgp-receiver")
            .arg(ns)
            .arg(local.to_string())
            .arg(&peers_file)
            .arg(expect.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start the calico-rs receiver")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut daemon = Daemon::new("calico-rs receiver", child);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                l.lock().unwrap().push((line, Instant::now()));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let r = loop {
            daemon.check_alive()?;
            if lines.lock().unwrap().iter().any(|(l, _)| l == "ready") {
                break Receiver {
                    daemon,
                    ctl: None,
                    lines,
                    perf: None,
                };
            }
            if Instant::now() > deadline {
                bail!("the calico-rs receiver did not get ready");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(r)
    }

    /// BIRD 2 with `conf`, once it answers on its control socket.
    pub fn bird(ns: &str, conf: &str, dir: &Path) -> Result<Receiver> {
        let conf_path = dir.join("receiver.conf");
        std::fs::write(&conf_path, conf)?;
        let ctl = dir.join("receiver.ctl");
        let mut daemon = start_bird(
            "BIRD receiver",
            ns,
            &conf_path,
            &ctl,
            &dir.join("receiver.err"),
        )?;
        wait_bird(&ctl, &mut daemon, Duration::from_secs(30))?;
        Ok(Receiver {
            daemon,
            ctl: Some(ctl),
            lines: Arc::new(Mutex::new(Vec::new())),
            perf: None,
        })
    }

    /// Starts `perf record` on the receiver if BGP_BENCH_PERF is set.
    pub fn maybe_profile(&mut self, name: &str) -> Result<()> {
        let Some(dir) = std::env::var_os("BGP_BENCH_PERF") else {
            return Ok(());
        };
        let out = Path::new(&dir).join(format!("{name}.perf.data"));
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "2000", "-g", "-o"])
            .arg(&out)
            .arg("-p")
            .arg(self.daemon.pid().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start perf")?;
        self.perf = Some(Daemon::new("perf", child));
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.perf.take() {
            p.stop();
        }
        self.daemon.stop();
    }

    /// When the calico-rs receiver printed a line starting with `prefix`.
    pub fn line_at(&self, prefix: &str) -> Option<(String, Instant)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|(l, _)| l.starts_with(prefix))
            .cloned()
    }
}

/// With BGP_BENCH_KEEP=DIR, a round's files (configurations, logs) are
/// copied to DIR/<name of the round's directory> when it ends.
pub fn keep_if_asked(dir: &Path) {
    if let Some(keep) = std::env::var_os("BGP_BENCH_KEEP") {
        let to = Path::new(&keep).join(dir.file_name().unwrap_or_default());
        let _ = std::fs::create_dir_all(&to);
        KEEP.lock().unwrap().push((dir.to_path_buf(), to));
    }
}

static KEEP: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

/// Copies the kept rounds' files (called before their directories go).
pub fn copy_kept() {
    for (from, to) in KEEP.lock().unwrap().drain(..) {
        if let Ok(entries) = std::fs::read_dir(&from) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::copy(e.path(), to.join(e.file_name()));
                }
            }
        }
    }
}

/// Seconds from `from` to `to`, or "-" if either is missing.
pub fn secs(from: Option<Instant>, to: Option<Instant>) -> Option<f64> {
    Some(to?.saturating_duration_since(from?).as_secs_f64())
}

pub fn fmt_secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |s| format!("{s:.2}"))
}

pub fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub fn parse_flags(args: &[String], mut set: impl FnMut(&str, &str) -> Result<()>) -> Result<()> {
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).context("flag needs a value")?;
        set(args[i].as_str(), v)?;
        i += 2;
    }
    Ok(())
}

pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root (network namespaces)");
    }
    for tool in ["bird", "ip"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            bail!("{tool} not found (apt-get install bird2 iproute2)");
        }
    }
    Ok(())
}
