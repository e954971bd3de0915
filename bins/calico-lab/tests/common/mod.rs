//! A running lab driven through the `calico-lab` binary, for the
//! end-to-end tests. Root only (tests skip through calico-testsupport, and
//! fail under CI=true); the lab is torn down on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Labs are heavy on a 2-core machine: one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub const LAB: &str = env!("CARGO_BIN_EXE_calico-lab");

pub fn sibling(name: &str) -> PathBuf {
    let p = Path::new(LAB).parent().unwrap().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub prefix: String,
}

impl Lab {
    pub fn up(name: &str, hosts: usize, datastore: &str) -> Lab {
        Lab::up_with(
            name,
            &["--hosts", &hosts.to_string(), "--datastore", datastore],
        )
    }

    /// `calico-lab up` with these flags.
    pub fn up_with(name: &str, flags: &[&str]) -> Lab {
        for b in ["calico-node", "calicoctl", "calico-probe"] {
            sibling(b);
        }
        let lab = Lab {
            dir: tempfile::tempdir().unwrap(),
            prefix: format!("e2{name}-"),
        };
        // Namespaces an interrupted earlier run may have left (same prefix).
        let _ = lab.run(&["down"]);
        let mut args = vec!["up"];
        args.extend_from_slice(flags);
        lab.ok(&args);
        lab
    }

    /// `calico-lab openstack-up`: two hosts and a neutron-server with the
    /// calico driver.
    pub fn openstack_up(name: &str, datastore: &str) -> Lab {
        Lab::openstack_up_with(name, datastore, &[])
    }

    /// `openstack_up` with further flags of `openstack-up`.
    pub fn openstack_up_with(name: &str, datastore: &str, flags: &[&str]) -> Lab {
        for b in ["calico-node", "calicoctl", "calico-probe", "calico-neutron"] {
            sibling(b);
        }
        let lab = Lab {
            dir: tempfile::tempdir().unwrap(),
            prefix: format!("e2{name}-"),
        };
        let _ = lab.run(&["down"]);
        let mut args = vec!["openstack-up", "--datastore", datastore];
        args.extend_from_slice(flags);
        lab.ok(&args);
        lab
    }

    /// The `openstack` CLI against the lab's first neutron-server.
    pub fn os(&self, args: &[&str]) -> Output {
        let mut a = vec!["os"];
        a.extend_from_slice(args);
        self.run(&a)
    }

    /// `openstack ... -f json`, which must succeed.
    pub fn os_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-f", "json"]);
        let out = self.ok(&[&["os"][..], &a].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("openstack {args:?}: {e}: {out}"))
    }

    /// Runs a command in the lab's fabric namespace (the controller's).
    pub fn in_fabric(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}fabric", self.prefix)])
            .args(cmd)
            .output()
            .unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        // Global flags first: `exec` takes everything after its target.
        Command::new(LAB)
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--prefix")
            .arg(&self.prefix)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "calico-lab {args:?} failed:\n{}\n{}\nagent logs:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for h in ["host1", "host2", "host3", "host4"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.path().join(format!("{h}.log"))) {
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                s.push_str(&format!(
                    "--- {h}\n{}\n",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        s
    }

    /// calicoctl's stdout, whether or not it succeeded.
    pub fn calicoctl_try(&self, args: &[&str]) -> String {
        let o = self.calicoctl_output(args, "");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// calicoctl against the lab's datastore, input on stdin.
    pub fn calicoctl(&self, args: &[&str], input: &str) -> String {
        let o = self.calicoctl_output(args, input);
        assert!(
            o.status.success(),
            "calicoctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn calicoctl_output(&self, args: &[&str], input: &str) -> Output {
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("lab.json")).unwrap(),
        )
        .unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}fabric", self.prefix)])
            .arg(sibling("calicoctl"))
            .args(args);
        cmd.env_remove("DATASTORE_TYPE")
            .env_remove("ETCD_ENDPOINTS");
        if let Some(path) = state["datastore"]["Local"]["path"].as_str() {
            cmd.env("DATASTORE_TYPE", "local")
                .env("DATASTORE_PATH", path);
        } else {
            cmd.env("DATASTORE_TYPE", "etcdv3").env(
                "ETCD_ENDPOINTS",
                state["datastore"]["Etcd"]["endpoint"].as_str().unwrap(),
            );
        }
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn add(&self, host: &str, ns: &str, name: &str, app: &str) -> String {
        let out = self.ok(&[
            "add-workload",
            "--host",
            host,
            "--namespace",
            ns,
            name,
            "--label",
            &format!("app={app}"),
        ]);
        // "<ns>/<name> on <host>: <ip> via <tap>"
        out.split_whitespace().nth(3).unwrap().to_string()
    }

    pub fn exec(&self, target: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", target];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    pub fn reach(&self, from: &str, ip: &str, port: u16) -> bool {
        let probe = sibling("calico-probe");
        self.exec(
            from,
            &[
                probe.to_str().unwrap(),
                "tcp",
                &format!("{ip}:{port}"),
                "--timeout-ms",
                "400",
            ],
        )
        .status
        .success()
    }

    /// Waits until `reach` gives `want` (the agent applies asynchronously).
    pub fn expect_reach(&self, from: &str, ip: &str, port: u16, want: bool, why: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.reach(from, ip, port) != want {
            assert!(
                Instant::now() < deadline,
                "{why}: {from} -> {ip}:{port} should be {}\n{}",
                if want { "allowed" } else { "denied" },
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}
