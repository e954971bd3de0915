//! Thin wrappers over `ip` for the lab's namespaces, links and processes.
//! Every object the lab creates is named with the lab's prefix (namespaces)
//! or lives inside such a namespace, so `down` can find and remove it.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Default prefix of every namespace the lab creates.
pub const DEFAULT_PREFIX: &str = "cl-";

static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the namespace prefix (once, at start-up); tests use their own so
/// several labs can exist side by side.
pub fn set_prefix(p: &str) {
    let _ = PREFIX.set(p.to_string());
}

/// The namespace prefix in use.
pub fn prefix() -> &'static str {
    PREFIX.get().map(String::as_str).unwrap_or(DEFAULT_PREFIX)
}

/// Full name of a lab namespace.
pub fn ns_name(suffix: &str) -> String {
    format!("{}{suffix}", prefix())
}

/// Runs `ip ARGS`, failing with ip's own message.
pub fn ip(args: &[&str]) -> Result<()> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (apt-get install iproute2)")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a command inside a namespace and returns its stdout.
pub fn exec(ns: &str, cmd: &[&str]) -> Result<String> {
    let o = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .with_context(|| format!("cannot run {cmd:?} in {ns}"))?;
    if !o.status.success() {
        bail!(
            "{} (in {ns}): {}",
            cmd.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Runs a command inside a namespace; true if it exited 0.
pub fn exec_ok(ns: &str, cmd: &[&str]) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Starts a long-running process inside a namespace; returns its PID
/// (`ip netns exec` execs the command, so it is the command's). The child
/// is kept so `procs::stop` can reap it.
pub fn spawn(
    ns: &str,
    cmd: &[&str],
    envs: &[(String, String)],
    log: &std::path::Path,
) -> Result<u32> {
    let out =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {cmd:?} in {ns}"))?;
    Ok(crate::procs::adopt(child))
}

/// Like `spawn`, appending to the log (an agent restarted keeps its history).
pub fn spawn_appending(
    ns: &str,
    cmd: &[&str],
    envs: &[(String, String)],
    log: &std::path::Path,
) -> Result<u32> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map(crate::procs::adopt)
        .with_context(|| format!("cannot start {cmd:?} in {ns}"))
}

pub fn add_ns(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])
}

/// Namespaces the lab created (by prefix).
pub fn lab_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix()))
        .map(str::to_string)
        .collect()
}

pub fn del_ns(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}

/// Sets a sysctl inside a namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    exec(ns, &["sysctl", "-q", "-w", &format!("{key}={value}")]).map(|_| ())
}
