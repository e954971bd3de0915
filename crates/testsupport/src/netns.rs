//! Network namespaces a test creates and always removes, and commands run
//! inside them. Names carry the test's PID so parallel runs never meet.

use std::process::{Child, Command, Output};

/// A namespace that is deleted (with its links) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns add <prefix>-<pid>-<suffix>` with loopback up.
    pub fn create(prefix: &str, suffix: &str) -> Netns {
        let name = format!("{prefix}-{}-{suffix}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> <args>`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// `ip netns exec <ns> <args>`, returning whatever happened.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {args:?}: {e}", self.name))
    }

    /// Starts a long-running process inside the namespace.
    pub fn spawn(&self, args: &[&str]) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {} {args:?}: {e}", self.name));
        Proc { child: Some(child) }
    }

    /// Moves the calling thread into the namespace (threads it spawns
    /// afterwards start there too).
    pub fn enter(&self) {
        let path = format!("/run/netns/{}", self.name);
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// A process killed (by PID) and reaped when dropped.
pub struct Proc {
    child: Option<Child>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGTERM, up to `grace` for it to exit (so it can stop what it
    /// started), then as `kill`.
    pub fn terminate(&mut self, grace: std::time::Duration) {
        if let Some(c) = &mut self.child {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + grace;
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        self.kill();
    }

    /// Kills and reaps it now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command, panicking with its stderr if it fails; returns stdout.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
