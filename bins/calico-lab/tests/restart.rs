//! Policy holds through agent restarts: while both agents restart, new
//! connections are sampled continuously on an allowed pair and on a denied
//! pair, and every sample must give the policy's answer. (An established
//! flow proves nothing here: conntrack lets it pass whatever the ruleset
//! holds.) The test checks its own sensitivity first: deleting the nftables
//! table by hand, as a flush-and-rebuild agent would, must show up in the
//! samples.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::{sibling, Lab, SERIAL};

/// A new TCP connection from web. The timeout tolerates a descheduled
/// probe on a busy machine but stays under TCP's 1 s SYN retransmission,
/// so a dropped SYN still counts as denied.
fn connects(lab: &Lab, ip: &str, port: u16) -> bool {
    let probe = sibling("calico-probe");
    let target = format!("{ip}:{port}");
    let args = [
        probe.to_str().unwrap(),
        "tcp",
        &target,
        "--timeout-ms",
        "900",
    ];
    let out = lab.exec("production/web", &args);
    if !out.status.success() {
        eprintln!(
            "sample {target}: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.success()
}

const POLICY: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: database-from-web
spec:
  selector: app == 'database'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'web'
    destination:
      ports: [5432]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: frontend-closed
spec:
  selector: app == 'frontend'
  types: [Ingress]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: egress-open
spec:
  selector: all()
  types: [Egress]
  egress:
  - action: Allow
";

/// New-connection samples of one allowed and one denied pair.
#[derive(Default)]
struct Samples {
    allowed_pair: Vec<bool>,
    denied_pair: Vec<bool>,
}

/// Samples both pairs (several samplers each, so a short gap is seen)
/// while `work` runs, and for a second after.
fn sample_during(lab: &Lab, db: &str, fe: &str, work: impl FnOnce()) -> Samples {
    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Samples::default());
    std::thread::scope(|sc| {
        for i in 0..6 {
            let (stop, samples) = (&stop, &samples);
            sc.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if i < 2 {
                        let ok = connects(lab, db, 5432);
                        samples.lock().unwrap().allowed_pair.push(ok);
                    } else {
                        let ok = connects(lab, fe, 81);
                        samples.lock().unwrap().denied_pair.push(ok);
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        work();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
    });
    samples.into_inner().unwrap()
}

#[test]
fn policy_holds_at_every_sample_through_agent_restarts() {
    if !calico_testsupport::require_root("policy_holds_at_every_sample_through_agent_restarts") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("r", 2, "local");
    lab.calicoctl(&["apply", "-f", "-"], POLICY);
    lab.add("host1", "production", "web", "web");
    let db = lab.add("host2", "production", "database", "database");
    let fe = lab.add("host2", "frontend", "frontend", "frontend");
    lab.expect_reach("production/web", &db, 5432, true, "web -> database:5432");
    lab.expect_reach("production/web", &fe, 81, false, "frontend is closed");

    let s = sample_during(&lab, &db, &fe, || {
        lab.ok(&["restart-agent", "host2"]);
        lab.ok(&["restart-agent", "host1"]);
    });
    eprintln!(
        "restart: {} samples of the allowed pair, {} of the denied pair",
        s.allowed_pair.len(),
        s.denied_pair.len()
    );
    assert!(s.allowed_pair.len() >= 10 && s.denied_pair.len() >= 10);
    let lost = s.allowed_pair.iter().filter(|ok| !**ok).count();
    let leaked = s.denied_pair.iter().filter(|ok| **ok).count();
    assert_eq!(
        lost, 0,
        "allowed pair denied in {lost} samples during restarts"
    );
    assert_eq!(
        leaked, 0,
        "denied pair allowed in {leaked} samples during restarts"
    );

    // Sensitivity: the samples do see a missing ruleset.
    let s = sample_during(&lab, &db, &fe, || {
        lab.ok(&["exec", "host2", "nft", "delete", "table", "inet", "calico"]);
        std::thread::sleep(Duration::from_millis(500));
    });
    assert!(
        s.denied_pair.iter().any(|ok| *ok),
        "the samplers missed a deleted ruleset ({} samples)",
        s.denied_pair.len()
    );
    // The agent repairs the drift.
    lab.expect_reach("production/web", &fe, 81, false, "repaired after deletion");
}
