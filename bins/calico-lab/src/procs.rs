//! The processes the lab starts, and stopping them: by PID (never by name),
//! all at once, and waited for until they are gone, zombies included.
//!
//! A process this invocation started is reaped here (its `Child` is kept
//! for that). One started by an earlier invocation (`up`, then `down`) was
//! re-parented to init when that invocation exited; init reaps it, and we
//! wait for that rather than leave a zombie behind.

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Children started by this process and not reaped yet.
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// The programs the lab starts: a PID from the state file is signalled only
/// if it still runs one of them (the PID may have been reused since).
const LAB_PROGRAMS: [&str; 18] = [
    "calico-node",
    "calico-neutron",
    "calico-dhcp-agent",
    "calico-lab",
    "dnsmasq",
    "dhclient",
    "calico-probe",
    "etcd",
    "bird",
    "mariadbd",
    "neutron-server",
    "keystone-wsgi-public",
    // RabbitMQ: its script, the Erlang VM and the VM's helpers.
    "rabbitmq-server",
    "epmd",
    "beam.smp",
    "erl_child_setup",
    "inet_gethost",
    "rabbit_disk_monitor",
];

/// How long a process gets to exit on SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);
/// Longest wait for every process to be gone (init reaps orphans every
/// couple of seconds here).
const DEADLINE: Duration = Duration::from_secs(15);

/// Keeps `child` so it can be reaped; returns its PID.
pub fn adopt(child: Child) -> u32 {
    let pid = child.id();
    lock().push(child);
    pid
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Child>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `stop` waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Until {
    /// Exited (it may still be a zombie of another parent): enough to start
    /// a replacement.
    Exited,
    /// No trace left: exited and reaped.
    Gone,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Running,
    Zombie,
    Gone,
}

/// Reaps `pid` if it is our child, then reads its state from /proc.
fn state(pid: u32) -> State {
    {
        let mut children = lock();
        if let Some(i) = children.iter().position(|c| c.id() == pid) {
            match children[i].try_wait() {
                Ok(Some(_)) | Err(_) => {
                    // Already reaped by try_wait: wait() returns at once.
                    let _ = children.remove(i).wait();
                    return State::Gone;
                }
                Ok(None) => return State::Running,
            }
        }
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return State::Gone;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    match stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
    {
        Some('Z') | Some('X') => State::Zombie,
        _ => State::Running,
    }
}

/// True if `pid` is our child or runs one of the lab's programs.
fn is_lab_process(pid: u32) -> bool {
    if lock().iter().any(|c| c.id() == pid) {
        return true;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // Agents are started as `ip netns exec <ns> calico-node`: until `ip`
    // has exec'd, the program is a later argument.
    // Python's setproctitle (neutron-server) rewrites its command line as
    // one space-separated string: split on spaces too.
    let mut args = cmdline
        .split(|b| *b == 0 || *b == b' ')
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy);
    // A forked neutron-server worker calls itself `neutron-server: <role>`.
    let program = |a: &str| {
        let name = a.rsplit('/').next().unwrap_or_default();
        LAB_PROGRAMS.contains(&name.trim_end_matches(':'))
    };
    match args.next() {
        Some(a) if program(&a) => true,
        // `ip netns exec <ns> <program>`, `python3 <script>` (neutron-server,
        // Keystone) or `sh <script>` (RabbitMQ).
        Some(a) if matches!(a.rsplit('/').next(), Some("ip" | "python3" | "sh")) => {
            args.any(|a| program(&a))
        }
        _ => false,
    }
}

fn signal(sig: &str, pids: &BTreeSet<u32>) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(std::process::Stdio::null())
        .status();
}

/// `pid` and every process descended from it (neutron-server's forked
/// workers and their co-processes), read from /proc.
pub fn with_descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // "pid (comm) S ppid ...": the parent is the second field after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        all.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    all
}

/// Stops every process in `pids` at once: SIGTERM, SIGKILL to those still
/// running after `GRACE`, then waits (polling, not a fixed sleep) until
/// each has exited or is gone, as `until` says.
pub fn stop(pids: &[u32], until: Until) -> Result<()> {
    let mut left: BTreeSet<u32> = pids
        .iter()
        .copied()
        .filter(|p| state(*p) != State::Gone)
        .collect();
    let running: BTreeSet<u32> = left
        .iter()
        .copied()
        .filter(|p| state(*p) == State::Running && is_lab_process(*p))
        .collect();
    // Zombies need no signal; strangers (a reused PID) are left alone.
    left.retain(|p| running.contains(p) || state(*p) == State::Zombie);
    signal("TERM", &running);
    let start = Instant::now();
    let mut killed = false;
    loop {
        left.retain(|p| match state(*p) {
            State::Gone => false,
            State::Zombie => until == Until::Gone,
            State::Running => true,
        });
        if left.is_empty() {
            return Ok(());
        }
        if !killed && start.elapsed() > GRACE {
            let still: BTreeSet<u32> = left
                .iter()
                .copied()
                .filter(|p| state(*p) == State::Running)
                .collect();
            signal("KILL", &still);
            killed = true;
        }
        if start.elapsed() > DEADLINE {
            bail!("processes {left:?} are still there {DEADLINE:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> u32 {
        adopt(Command::new("sleep").arg("30").spawn().unwrap())
    }

    #[test]
    fn own_children_are_stopped_together_and_reaped() {
        let pids: Vec<u32> = (0..5).map(|_| sleeper()).collect();
        let t = Instant::now();
        stop(&pids, Until::Gone).unwrap();
        // Five processes, well under one second: no per-process wait.
        assert!(
            t.elapsed() < Duration::from_millis(900),
            "{:?}",
            t.elapsed()
        );
        for p in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{p}")).exists(),
                "{p} left behind (a zombie?)"
            );
        }
    }

    #[test]
    fn a_process_ignoring_sigterm_is_killed() {
        let child = Command::new("bash")
            .args(["-c", "trap '' TERM; exec sleep 30"])
            .spawn()
            .unwrap();
        let pid = adopt(child);
        // Let bash install the trap and exec sleep (which inherits it).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_lab_process(pid) || {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !c.starts_with(b"sleep")
        } {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        stop(&[pid], Until::Gone).unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn unrelated_and_vanished_pids_are_left_alone() {
        // This test process is not a lab program: not signalled.
        let me = std::process::id();
        stop(&[me], Until::Gone).unwrap();
        // A PID that no longer exists is simply done.
        let pid = sleeper();
        stop(&[pid], Until::Gone).unwrap();
        stop(&[pid], Until::Gone).unwrap();
    }
}
