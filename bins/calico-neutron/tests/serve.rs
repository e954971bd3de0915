//! The co-process as the Python shim drives it: JSON lines in, one reply
//! per request, errors that name the object and field, and the requests
//! that must not write (status-only updates, validation).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

struct CoProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CoProcess {
    fn start(db: &std::path::Path) -> CoProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_calico-neutron"))
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut c = CoProcess {
            child,
            stdin,
            stdout,
        };
        let r = c.call(json!({"op": "init", "elector_id": "test:1", "options": {
            "datastore_type": "local", "local_datastore_path": db}}));
        assert_eq!(r["ok"], true, "{r}");
        c
    }

    fn call(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for CoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port(status: &str) -> Value {
    json!({"id": "p1", "network_id": "n1", "mac_address": "fa:16:3e:00:00:01",
           "device_id": "vm1", "device_owner": "compute:nova", "status": status,
           "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.65.0.5"}],
           "binding:host_id": "h1", "binding:vif_type": "tap"})
}

#[test]
fn requests_replies_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = CoProcess::start(&dir.path().join("calico.db"));
    assert_eq!(c.call(json!({"op": "ping"}))["result"], "pong");

    let r = c.call(json!({"op": "sync_port", "current": port("DOWN")}));
    assert_eq!(r["result"][0]["outcome"], "created", "{r}");

    // Our own status report coming back as an update writes nothing.
    let r = c.call(json!({"op": "sync_port", "original": port("DOWN"), "current": port("ACTIVE")}));
    assert_eq!(r["result"], json!([]), "{r}");

    // Bad data: the reply names the object and field; nothing is written.
    let bad = json!({"id": "sg1", "security_group_rules": [
        {"id": "r1", "direction": "ingress", "protocol": "bogus"}]});
    let r = c.call(json!({"op": "validate_security_group", "security_group": bad}));
    assert_eq!(r["ok"], false);
    assert_eq!(r["kind"], "translate");
    assert_eq!(r["object"], "security group sg1 rule r1");
    assert_eq!(r["field"], "protocol");
    let r = c.call(json!({"op": "sync_security_group", "security_group": bad}));
    assert_eq!(r["kind"], "translate");

    // A malformed request is an error reply, not the end of the process.
    let r = c.call(json!({"op": "no_such_op"}));
    assert_eq!(
        (r["ok"].clone(), r["kind"].clone()),
        (json!(false), json!("request"))
    );
    assert_eq!(c.call(json!({"op": "ping"}))["result"], "pong");

    // One leader; it can resign.
    assert_eq!(c.call(json!({"op": "elect"}))["result"]["leader"], true);
    assert_eq!(c.call(json!({"op": "resign"}))["result"]["leader"], false);
}

#[test]
fn requests_before_init_are_refused() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_calico-neutron"))
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", json!({"op": "elect"})).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["ok"], false);
    assert!(reply["error"].as_str().unwrap().contains("init"));
    assert!(
        out.status.success(),
        "the process ends when its stdin closes"
    );
}
