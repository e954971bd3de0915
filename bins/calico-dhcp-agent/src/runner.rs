//! Carries out the plan: each network's device, files and dnsmasq child.
//! A dnsmasq that exits is started again (after a pause that grows while
//! it keeps failing); a step that fails is logged and retried at the next
//! pass, and the other networks carry on.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use calico_dhcp::dnsmasq::Settings;
use calico_dhcp::plan::{plan, Served, Step};
use tracing::{info, warn};

use crate::device::{self, Kind};

const STOP_GRACE: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

struct Running {
    served: Served,
    child: Option<Child>,
    /// When to start it again after an exit or a failed start.
    retry_at: Option<Instant>,
    retry_wait: Duration,
}

pub struct Runner {
    program: String,
    settings: Settings,
    kind: Kind,
    running: BTreeMap<String, Running>,
}

impl Runner {
    pub fn new(program: String, settings: Settings, kind: Kind) -> Runner {
        Runner {
            program,
            settings,
            kind,
            running: BTreeMap::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn set_mtu(&mut self, mtu: Option<u32>) {
        self.settings.mtu = mtu;
    }

    /// Networks a previous run left behind (their directories): a dnsmasq
    /// still running there (the agent was killed) is stopped, and the
    /// network is stopped or started afresh at the first `apply`.
    pub fn adopt_leftovers(&mut self) {
        let Ok(dirs) = std::fs::read_dir(&self.settings.confs_dir) else {
            return;
        };
        for d in dirs.flatten().filter(|d| d.path().is_dir()) {
            let id = d.file_name().to_string_lossy().into_owned();
            stop_leftover(&d.path().join("pid"));
            let served = Served {
                network_id: id.clone(),
                argv: vec![],
                files: vec![],
                leases: String::new(),
                device: calico_dhcp::dnsmasq::device_name(&id),
                addresses: vec![],
            };
            self.running.insert(id, Running::idle(served));
        }
    }

    /// Moves every network to `wanted`, touching only those that changed.
    pub fn apply(&mut self, wanted: BTreeMap<String, Served>) {
        let current: BTreeMap<String, Served> = self
            .running
            .iter()
            .map(|(k, r)| (k.clone(), r.served.clone()))
            .collect();
        for step in plan(&current, &wanted) {
            let result = match &step {
                Step::Start(id) | Step::Restart(id) => self.start(&wanted[id]),
                Step::Stop(id) => self.stop(id),
            };
            match result {
                Ok(()) => info!(?step, "dnsmasq"),
                Err(e) => warn!(?step, error = %format!("{e:#}"), "dnsmasq step failed; retried"),
            }
        }
    }

    fn start(&mut self, served: &Served) -> Result<()> {
        let id = served.network_id.clone();
        if let Some(mut old) = self.running.remove(&id) {
            stop_child(&mut old.child);
        }
        let mut r = Running::idle(served.clone());
        let result = self.spawn(&mut r);
        if result.is_err() {
            r.retry_at = Some(Instant::now() + r.retry_wait);
        }
        self.running.insert(id, r);
        result
    }

    fn spawn(&self, r: &mut Running) -> Result<()> {
        let s = &r.served;
        device::ensure(self.kind, &s.device, &s.addresses)?;
        let dir = self.settings.conf_dir(&s.network_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        write_files(&dir, &s.files)?;
        std::fs::write(dir.join("leases"), &s.leases)?;
        let mut cmd = Command::new(&self.program);
        // In its own process group: a Ctrl-C meant for the agent reaches
        // the agent, which stops its dnsmasqs itself.
        cmd.args(&s.argv).stdin(Stdio::null()).process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.program))?;
        info!(network = %s.network_id, pid = child.id(), device = %s.device, "dnsmasq started");
        r.child = Some(child);
        r.retry_at = None;
        Ok(())
    }

    fn stop(&mut self, id: &str) -> Result<()> {
        if let Some(mut r) = self.running.remove(id) {
            stop_child(&mut r.child);
            device::remove(&r.served.device)?;
        }
        let dir = self.settings.conf_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Starts again what exited or failed to start, when its pause is over.
    pub fn supervise(&mut self) {
        let now = Instant::now();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            let r = self.running.get_mut(&id).expect("listed");
            if let Some(c) = &mut r.child {
                match c.try_wait() {
                    Ok(None) => continue,
                    Ok(Some(status)) => {
                        warn!(network = %id, %status, "dnsmasq exited; starting it again");
                    }
                    Err(e) => warn!(network = %id, error = %e, "cannot wait for dnsmasq"),
                }
                r.child = None;
                r.retry_at = Some(now + r.retry_wait);
                r.retry_wait = (r.retry_wait * 2).min(RETRY_MAX);
            }
            if r.is_leftover() || r.retry_at.is_none_or(|t| t > now) {
                continue;
            }
            let mut r = self.running.remove(&id).expect("listed");
            if let Err(e) = self.spawn(&mut r) {
                warn!(network = %id, error = %format!("{e:#}"), "cannot start dnsmasq");
                r.retry_at = Some(now + r.retry_wait);
                r.retry_wait = (r.retry_wait * 2).min(RETRY_MAX);
            }
            self.running.insert(id, r);
        }
    }

    /// Stops every dnsmasq (the agent is exiting); devices stay, so the
    /// gateways keep answering until the agent is back.
    pub fn stop_all(&mut self) {
        for r in self.running.values_mut() {
            stop_child(&mut r.child);
        }
    }
}

impl Running {
    /// A network a previous run left (`adopt_leftovers`): nothing to start
    /// until a plan replaces it (its command line is empty).
    fn is_leftover(&self) -> bool {
        self.served.argv.is_empty()
    }

    fn idle(served: Served) -> Running {
        Running {
            served,
            child: None,
            retry_at: None,
            retry_wait: RETRY_MIN,
        }
    }
}

/// Stops the dnsmasq whose pid file this is, if it is still ours (its
/// command line names this pid file); dnsmasq drops its privileges, so a
/// parent-death signal cannot do this for us.
fn stop_leftover(pid_file: &std::path::Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let wanted = format!("--pid-file={}", pid_file.display());
    if !cmdline.split(|b| *b == 0).any(|a| a == wanted.as_bytes()) {
        return;
    }
    info!(pid, "stopping the dnsmasq a previous agent left running");
    // SAFETY: a process identified by its pid file and command line.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && std::path::Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_files(dir: &std::path::Path, files: &[(&'static str, String)]) -> Result<()> {
    for (name, text) in files {
        // Written whole and renamed: dnsmasq never reads half a file.
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

/// SIGTERM, then SIGKILL after the grace time; always reaped.
fn stop_child(child: &mut Option<Child>) {
    let Some(mut c) = child.take() else {
        return;
    };
    // SAFETY: signalling our own child, which we have not reaped.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}
