//! End-to-end dataplane benchmarks against a real lab (`calico-lab`, run as
//! a subprocess; needs root, nftables and, for `pps`, iperf3):
//!
//!   calico-bench latency [local|etcd] [--changes N] [--endpoints N]
//!       `calicoctl apply` of a policy change to packets obeying it, with
//!       N endpoints on the host (two real workloads, the rest
//!       WorkloadEndpoints whose tap does not exist).
//!   calico-bench pps [--rounds N] [--policies N] [--seconds S]
//!       64-byte UDP packets per second between two workloads on one host,
//!       with no policy selecting the receiver versus N policies selecting
//!       it, alternating.
//!
//! Both bring a one-host lab up in their own directory and namespace
//! prefix and always take it down again (a Drop guard), even on error.
//! `latency-poll` is internal: the probe loop run inside the client
//! workload's namespace.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

const HOST: &str = "host1";
/// OpenStack project the benchmark's endpoints live in.
const NS: &str = "bench";

// ---------------------------------------------------------------- the lab

/// A lab brought up by `calico-lab up`; dropping it runs `calico-lab down`.
struct Lab {
    exe: PathBuf,
    dir: PathBuf,
    prefix: String,
}

/// A workload added with `calico-lab add-workload`.
struct Workload {
    id: String,
    ip: Ipv4Addr,
    iface: String,
}

impl Lab {
    fn up(dir: &Path, prefix: &str, datastore: &str, log_filter: Option<&str>) -> Result<Lab> {
        let exe = sibling("calico-lab")?;
        for b in ["calicoctl", "calico-node", "calico-probe"] {
            sibling(b)?;
        }
        if dir.join("lab.json").exists() {
            bail!(
                "a lab is already up in {} (calico-lab --dir {} --prefix {prefix} down)",
                dir.display(),
                dir.display()
            );
        }
        // From here on the guard takes down whatever `up` managed to create.
        let lab = Lab {
            exe,
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
        };
        let mut cmd = lab.command();
        cmd.args(["up", "--hosts", "1", "--datastore", datastore]);
        if let Some(f) = log_filter {
            // The agent inherits calico-lab's environment.
            cmd.env("CALICO_LOG", f);
        }
        run(cmd, "calico-lab up")?;
        Ok(lab)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--dir")
            .arg(&self.dir)
            .arg("--prefix")
            .arg(&self.prefix);
        c
    }

    fn add_workload(&self, name: &str, labels: &[(&str, &str)]) -> Result<Workload> {
        let mut cmd = self.command();
        cmd.args(["add-workload", "--host", HOST, "--namespace", NS, name]);
        for (k, v) in labels {
            cmd.arg("--label").arg(format!("{k}={v}"));
        }
        let out = run(cmd, "calico-lab add-workload")?;
        // `bench/server on host1: 198.19.0.2 via tap0123456789a`
        let line = out.lines().last().unwrap_or("");
        let (ip, iface) = line
            .split_once(": ")
            .and_then(|(_, r)| r.split_once(" via "))
            .ok_or_else(|| anyhow!("unexpected add-workload output {line:?}"))?;
        Ok(Workload {
            id: format!("{NS}/{name}"),
            ip: ip.trim().parse().context("workload address")?,
            iface: iface.trim().to_string(),
        })
    }

    /// `calico-lab exec TARGET CMD...` (a workload `ns/name` or a host).
    fn exec(&self, target: &str, cmd: &[&str]) -> Command {
        let mut c = self.command();
        c.arg("exec").arg(target).args(cmd);
        c
    }

    fn exec_out(&self, target: &str, cmd: &[&str]) -> Result<String> {
        run(self.exec(target, cmd), &cmd.join(" "))
    }

    /// Environment pointing calicoctl at the lab's datastore (from the
    /// lab's state file, as `calico-lab` itself does).
    fn datastore_env(&self) -> Result<Vec<(String, String)>> {
        let f = self.dir.join("lab.json");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f)?)
            .with_context(|| format!("{} is not a lab state file", f.display()))?;
        let ds = &v["datastore"];
        if let Some(path) = ds["Local"]["path"].as_str() {
            return Ok(vec![
                ("DATASTORE_TYPE".into(), "local".into()),
                ("DATASTORE_PATH".into(), path.into()),
            ]);
        }
        if let Some(ep) = ds["Etcd"]["endpoint"].as_str() {
            return Ok(vec![
                ("DATASTORE_TYPE".into(), "etcdv3".into()),
                ("ETCD_ENDPOINTS".into(), ep.into()),
            ]);
        }
        bail!("unknown datastore in {}", f.display())
    }

    /// `calicoctl ARGS` inside the fabric namespace, as `calico-lab` runs it.
    fn calicoctl_command(&self, args: &[&str]) -> Result<Command> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}fabric", self.prefix)])
            .arg(crate::calicoctl()?)
            .args(args);
        c.env_remove("ETCD_ENDPOINTS")
            .env_remove("DATASTORE_TYPE")
            .env_remove("DATASTORE_PATH")
            .envs(self.datastore_env()?);
        Ok(c)
    }

    fn calicoctl(&self, args: &[&str]) -> Result<String> {
        run(
            self.calicoctl_command(args)?,
            &format!("calicoctl {}", args.join(" ")),
        )
    }

    /// Writes `yaml` to a file in the lab directory and applies it.
    fn apply(&self, name: &str, yaml: &str) -> Result<()> {
        let f = self.dir.join(name);
        std::fs::write(&f, yaml)?;
        self.calicoctl(&["apply", "-f", f.to_str().unwrap()])
            .map(|_| ())
    }

    fn host_log(&self) -> PathBuf {
        self.dir.join(format!("{HOST}.log"))
    }

    /// Names of the chains in `table inet calico` on the host.
    fn chains(&self) -> Result<Vec<String>> {
        let out = self.exec_out(HOST, &["nft", "list", "chains", "inet"])?;
        Ok(out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("chain "))
            .map(|l| l.trim_end_matches(" {").trim().to_string())
            .collect())
    }

    /// Waits until `f` holds (checked every 200 ms).
    fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let t = Instant::now();
        loop {
            if f()? {
                return Ok(());
            }
            if t.elapsed() > limit {
                bail!(
                    "timed out after {:?} waiting for {what}; see {}",
                    limit,
                    self.host_log().display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut c = self.command();
        c.arg("down").stdout(Stdio::null());
        match c.status() {
            Ok(s) if s.success() => {}
            other => eprintln!(
                "calico-bench: `calico-lab --dir {} --prefix {} down` failed ({other:?}); run it by hand",
                self.dir.display(),
                self.prefix
            ),
        }
    }
}

pub(crate) fn sibling(name: &str) -> Result<PathBuf> {
    let p = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .join(name);
    if !p.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p calico-bench -p calico-lab -p calico-node -p calicoctl -p calico-probe)",
            p.display()
        );
    }
    Ok(p)
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !o.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&o.stderr).trim(),
            String::from_utf8_lossy(&o.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Options shared by both benchmarks: `--dir`, `--prefix` and `--key value`
/// pairs; bare words are returned as positionals.
struct Opts {
    dir: PathBuf,
    prefix: String,
    values: BTreeMap<String, String>,
    positional: Vec<String>,
}

impl Opts {
    fn parse(args: &[String], default_dir: &str, default_prefix: &str) -> Result<Opts> {
        let mut o = Opts {
            dir: PathBuf::from(default_dir),
            prefix: default_prefix.to_string(),
            values: BTreeMap::new(),
            positional: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            if let Some(k) = args[i].strip_prefix("--") {
                let v = args
                    .get(i + 1)
                    .ok_or_else(|| anyhow!("--{k} needs a value"))?
                    .clone();
                match k {
                    "dir" => o.dir = PathBuf::from(v),
                    "prefix" => o.prefix = v,
                    _ => {
                        o.values.insert(k.to_string(), v);
                    }
                }
                i += 2;
            } else {
                o.positional.push(args[i].clone());
                i += 1;
            }
        }
        Ok(o)
    }

    fn num(&mut self, key: &str, default: usize) -> Result<usize> {
        match self.values.remove(key) {
            Some(v) => v.parse().with_context(|| format!("--{key} {v}")),
            None => Ok(default),
        }
    }

    fn done(&self) -> Result<()> {
        if let Some(k) = self.values.keys().next() {
            bail!("unknown option --{k}");
        }
        Ok(())
    }
}

// ------------------------------------------------------- apply-to-enforced

fn unix_ns(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The policy toggled by the latency benchmark: ingress to the server from
/// the client, TCP 80, Allow or Deny.
fn toggle_policy(action: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: bench-toggle
  namespace: {NS}
spec:
  order: 10
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - action: {action}
    protocol: TCP
    source:
      selector: role == 'client'
    destination:
      ports: [80]
"
    )
}

/// Policies in place around the toggled one: every endpoint may send;
/// the filler endpoints accept each other (one IP set of ~1,000 members,
/// ~1,000 endpoint chains using it).
const LATENCY_BASE: &str = "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: bench-egress
  namespace: bench
spec:
  order: 100
  selector: all()
  types: [Egress]
  egress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: bench-fillers
  namespace: bench
spec:
  order: 20
  selector: has(group)
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: has(group)
    destination:
      ports: [22, 80, 443]
";

/// `count` WorkloadEndpoints on the host whose tap devices do not exist
/// (as when Nova has not plugged the VM yet); addresses from the lab pool
/// well away from the host's IPAM block.
fn filler_endpoints(count: usize) -> String {
    let mut s = String::new();
    for i in 0..count {
        let workload = format!("filler-{i}");
        let iface = format!("tapf{i:010x}");
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 128, 0)) + i as u32);
        s.push_str(&format!(
            "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: {}
  namespace: {NS}
  labels:
    group: g{}
    app: filler
spec:
  orchestrator: openstack
  node: {HOST}
  workload: {workload}
  endpoint: {iface}
  interfaceName: {iface}
  ipNetworks:
  - {ip}/32
---
",
            calico_api::endpoint::workload_endpoint_name(HOST, "openstack", &workload, &iface),
            i % 50,
        ));
    }
    s
}

/// The probe loop inside the client workload, driven over stdin/stdout.
struct Poller {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Poller {
    fn start(lab: &Lab, client: &Workload, target: SocketAddr) -> Result<Poller> {
        let me = std::env::current_exe()?;
        let mut child = lab
            .exec(
                &client.id,
                &[me.to_str().unwrap(), "latency-poll", &target.to_string()],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the poller")?;
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Ok(Poller {
            child,
            stdin,
            stdout,
        })
    }

    fn send(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }

    fn line(&mut self) -> Result<String> {
        let mut s = String::new();
        if self.stdout.read_line(&mut s)? == 0 {
            bail!("the poller exited");
        }
        Ok(s.trim().to_string())
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        let _ = self.send("quit");
        let _ = self.child.wait();
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn latency(args: &[String]) -> Result<()> {
    let mut o = Opts::parse(args, "/tmp/calico-bench-latency", "bl-")?;
    let changes = o.num("changes", 100)?;
    let endpoints = o.num("endpoints", 1000)?;
    let warmup = o.num("warmup", 4)?;
    o.done()?;
    let datastore = o.positional.first().map(String::as_str).unwrap_or("local");
    if endpoints < 2 {
        bail!("--endpoints must be at least 2");
    }
    println!(
        "latency: one-host lab ({datastore} datastore) in {} (namespaces {}*)",
        o.dir.display(),
        o.prefix
    );
    let lab = Lab::up(&o.dir, &o.prefix, datastore, Some("info,calico_node=debug"))?;
    let server = lab.add_workload("server", &[("role", "server")])?;
    let client = lab.add_workload("client", &[("role", "client")])?;
    lab.apply("base.yaml", LATENCY_BASE)?;
    lab.apply("toggle-allow.yaml", &toggle_policy("Allow"))?;
    let fillers_mark = std::fs::metadata(lab.host_log())?.len();
    let t = Instant::now();
    lab.apply("fillers.yaml", &filler_endpoints(endpoints - 2))?;
    println!(
        "latency: {} filler WorkloadEndpoints applied in {:.2} s",
        endpoints - 2,
        t.elapsed().as_secs_f64()
    );
    let tw_chains = |lab: &Lab| -> Result<usize> {
        Ok(lab
            .chains()?
            .iter()
            .filter(|c| c.starts_with("cali-tw-"))
            .count())
    };
    let t = Instant::now();
    lab.wait_for(
        &format!("{endpoints} endpoint chains"),
        Duration::from_secs(120),
        || Ok(tw_chains(&lab)? >= endpoints),
    )?;
    println!(
        "latency: {} endpoint chains programmed {:.2} s after the apply returned",
        tw_chains(&lab)?,
        t.elapsed().as_secs_f64()
    );
    let log_mark = std::fs::metadata(lab.host_log())?.len();

    let mut poller = Poller::start(&lab, &client, SocketAddr::from((server.ip, 80)))?;
    let allow = lab.dir.join("toggle-allow.yaml");
    let deny = lab.dir.join("toggle-deny.yaml");
    std::fs::write(&deny, toggle_policy("Deny"))?;
    // Starts allowed; the first change denies.
    let mut samples: Vec<Sample> = Vec::new();
    for i in 0..warmup + changes {
        let (file, expect) = if i % 2 == 0 {
            (&deny, "closed")
        } else {
            (&allow, "open")
        };
        poller.send(&format!("watch {expect}"))?;
        let armed = poller.line()?;
        if armed != "ARMED" {
            bail!("change {i}: the poller says {armed:?} before the change (expected the opposite of {expect})");
        }
        let mut cmd = lab.calicoctl_command(&["apply", "-f", file.to_str().unwrap()])?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let t0 = SystemTime::now();
        let out = cmd.output()?;
        let ctl_end = SystemTime::now();
        if !out.status.success() {
            bail!(
                "calicoctl apply: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let reply = poller.line()?;
        let Some(flip) = reply
            .strip_prefix("FLIP ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<i128>().ok())
        else {
            bail!("change {i} ({expect}): the poller says {reply:?}");
        };
        if flip < unix_ns(t0) {
            bail!("change {i} ({expect}): the outcome flipped before the apply started");
        }
        if i >= warmup {
            samples.push(Sample {
                t0: unix_ns(t0),
                ctl_end: unix_ns(ctl_end),
                flip,
            });
        }
    }
    drop(poller);

    let ms = |ns: i128| ns as f64 / 1e6;
    let lat = sorted(samples.iter().map(|s| ms(s.flip - s.t0)));
    let ctl = sorted(samples.iter().map(|s| ms(s.ctl_end - s.t0)));
    println!(
        "latency: {changes} changes (Allow<->Deny of one NetworkPolicy, after {warmup} warm-up changes), {endpoints} endpoints on the host"
    );
    println!(
        "latency: apply-to-enforced p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, min {:.1} ms",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat[lat.len() - 1],
        lat[0]
    );
    println!(
        "latency:   calicoctl process (ip netns exec, start, datastore write, exit) p50 {:.1} ms, p99 {:.1} ms",
        percentile(&ctl, 50.0),
        percentile(&ctl, 99.0)
    );
    report_agent_log(&lab.host_log(), fillers_mark, log_mark, &samples)?;
    Ok(())
}

/// One measured change, as Unix nanoseconds.
struct Sample {
    /// Right before `calicoctl apply` was started.
    t0: i128,
    /// When calicoctl had exited.
    ctl_end: i128,
    /// Start of the first probe attempt with the new outcome.
    flip: i128,
}

fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// Summarises the agent's log: warnings and errors since the filler
/// endpoints were applied (byte offset `fillers`), grouped by message with
/// interface names and addresses masked, and how often any one exact line
/// repeats (a storm repeats); then, from the changes on (offset `changes`),
/// where each change's time went, from the agent's per-batch debug lines
/// (`batch applied`).
fn report_agent_log(path: &Path, fillers: u64, changes: u64, samples: &[Sample]) -> Result<()> {
    let bytes = std::fs::read(path)?;
    let since = |from: u64| {
        String::from_utf8_lossy(&bytes[(from as usize).min(bytes.len())..]).into_owned()
    };
    let problem = |line: &str| line.contains(" WARN ") || line.contains(" ERROR ");
    // Drop the timestamp; mask what differs per endpoint.
    let mask = |line: &str| -> String {
        let msg = line.split_once(' ').map(|(_, r)| r).unwrap_or(line).trim();
        msg.split(' ')
            .map(|w| {
                if w.starts_with("tap") {
                    "<tap>"
                } else if w.trim_start_matches('(').starts_with("198.") {
                    "<ip>"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(140)
            .collect()
    };
    let text = since(fillers);
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    let mut exact: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines().filter(|l| problem(l)) {
        *groups.entry(mask(line)).or_default() += 1;
        *exact
            .entry(
                line.split_once(' ')
                    .map(|(_, r)| r)
                    .unwrap_or(line)
                    .to_string(),
            )
            .or_default() += 1;
    }
    let n: usize = groups.values().sum();
    println!(
        "latency: agent warnings/errors since the filler endpoints were applied: {n} lines, any one line at most {} times{}",
        exact.values().max().copied().unwrap_or(0),
        if n == 0 { "" } else { ":" }
    );
    for (m, c) in groups.iter().take(10) {
        println!("  {c} x {m}");
    }
    let text = since(changes);
    println!(
        "latency: of which during the changes: {}",
        text.lines().filter(|l| problem(l)).count()
    );
    let batches: Vec<BTreeMap<String, String>> = text
        .lines()
        .filter(|l| l.contains("batch applied"))
        .map(|line| {
            line.split_whitespace()
                .filter_map(|tok| tok.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    let num = |b: &BTreeMap<String, String>, k: &str| -> f64 {
        b.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    let resyncs: Vec<f64> = batches
        .iter()
        .filter(|b| b.get("resync").map(String::as_str) == Some("true"))
        .map(|b| num(b, "nft_ms"))
        .collect();
    let idle = sorted(
        batches
            .iter()
            .filter(|b| {
                num(b, "inputs") == 0.0 && b.get("resync").map(String::as_str) != Some("true")
            })
            .map(|b| num(b, "nft_ms") + num(b, "routes_ms")),
    );
    let read_back = if resyncs.is_empty() {
        "none read the nft table back".to_string()
    } else {
        format!(
            "{} read the nft table back, taking {:.1} ms on average",
            resyncs.len(),
            resyncs.iter().sum::<f64>() / resyncs.len() as f64
        )
    };
    println!(
        "latency: agent applies during the run: {} ({read_back}; {} without inputs (pending-route retries, drift checks), p50 {:.1} ms)",
        batches.len(),
        idle.len(),
        if idle.is_empty() { 0.0 } else { percentile(&idle, 50.0) }
    );
    // Each change's batch: the first with inputs received after its start.
    let mut parts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut with_resync = 0;
    for s in samples {
        let Some(b) = batches
            .iter()
            .find(|b| num(b, "inputs") > 0.0 && (num(b, "recv_unix_us") as i128) * 1000 > s.t0)
        else {
            continue;
        };
        let recv = num(b, "recv_unix_us") as i128 * 1000;
        let (calc, nft) = (num(b, "calc_ms"), num(b, "nft_ms"));
        if b.get("resync").map(String::as_str) == Some("true") {
            with_resync += 1;
        }
        let mut add = |k: &'static str, v: f64| parts.entry(k).or_default().push(v);
        add("1 start->agent has it", (recv - s.t0) as f64 / 1e6);
        add("2 agent->packets obey", (s.flip - recv) as f64 / 1e6);
        add("3  of which calc", calc);
        add("4 nft apply (incl. exit)", nft);
        add("5 calicoctl process", (s.ctl_end - s.t0) as f64 / 1e6);
    }
    if !parts.is_empty() {
        println!(
            "latency: per change ({} matched to an agent batch; {with_resync} of those batches read the nft table back), ms:",
            parts.values().next().map(Vec::len).unwrap_or(0)
        );
        for (k, v) in parts {
            let v = sorted(v.into_iter());
            println!(
                "  {:<22} p50 {:>6.1}  p99 {:>6.1}  max {:>6.1}",
                &k[2..],
                percentile(&v, 50.0),
                percentile(&v, 99.0),
                v[v.len() - 1]
            );
        }
    }
    Ok(())
}

/// Inside the client's namespace: TCP connection attempts to TARGET, one
/// started every millisecond (non-blocking, each on a new socket, closed
/// with RST so no TIME_WAIT piles up), each resolved as open (connected) or
/// closed (refused, or no answer within 50 ms). On `watch open|closed` it
/// answers `ARMED` once the current outcome is confirmed to be the other one,
/// then `FLIP <unix ns>` with the start time of the first attempt of the
/// first run of 3 attempts with the expected outcome.
pub fn poll(args: &[String]) -> Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    const PERIOD: Duration = Duration::from_millis(1);
    const NO_ANSWER: Duration = Duration::from_millis(50);
    const CONFIRM: usize = 3;
    const GIVE_UP: Duration = Duration::from_secs(20);
    const EINPROGRESS: i32 = 115;

    let target: SocketAddr = args
        .first()
        .context("usage: latency-poll IP:PORT")?
        .parse()?;
    struct Attempt {
        start: SystemTime,
        started: Instant,
        sock: Option<Socket>,
        open: Option<bool>,
    }
    let start_attempt = || -> Attempt {
        let start = SystemTime::now();
        let started = Instant::now();
        let sock = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .and_then(|s| {
            s.set_nonblocking(true)?;
            s.set_linger(Some(Duration::ZERO))?;
            Ok(s)
        });
        let (sock, open) = match sock {
            Ok(s) => match s.connect(&target.into()) {
                Ok(()) => (None, Some(true)),
                Err(e) if e.raw_os_error() == Some(EINPROGRESS) => (Some(s), None),
                Err(_) => (None, Some(false)),
            },
            Err(_) => (None, Some(false)),
        };
        Attempt {
            start,
            started,
            sock,
            open,
        }
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        let expect_open = match line.trim() {
            "watch open" => true,
            "watch closed" => false,
            "quit" => return Ok(()),
            other => bail!("latency-poll: unknown command {other:?}"),
        };
        let began = Instant::now();
        let mut pending: std::collections::VecDeque<Attempt> = Default::default();
        let mut next = Instant::now();
        let mut armed = false;
        // Start of the current run of attempts with the expected outcome.
        let mut run: Option<(SystemTime, usize)> = None;
        let mut old_seen = 0usize;
        let answer = loop {
            let now = Instant::now();
            if now >= next {
                pending.push_back(start_attempt());
                next += PERIOD;
                if next < now {
                    next = now + PERIOD;
                }
            }
            for a in pending.iter_mut().filter(|a| a.open.is_none()) {
                let s = a.sock.as_ref().unwrap();
                if s.peer_addr().is_ok() {
                    a.open = Some(true);
                } else if matches!(s.take_error(), Ok(Some(_))) || a.started.elapsed() > NO_ANSWER {
                    a.open = Some(false);
                }
                if a.open.is_some() {
                    a.sock = None; // close: RST if connected
                }
            }
            // Consume resolved attempts in the order they started.
            let mut verdict = None;
            while let Some(open) = pending.front().and_then(|a| a.open) {
                let a = pending.pop_front().unwrap();
                if open == expect_open {
                    if !armed {
                        verdict = Some("ALREADY".to_string());
                        break;
                    }
                    let r = run.get_or_insert((a.start, 0));
                    r.1 += 1;
                    if r.1 >= CONFIRM {
                        verdict = Some(format!("FLIP {}", unix_ns(r.0)));
                        break;
                    }
                } else {
                    run = None;
                    old_seen += 1;
                    if !armed && old_seen >= CONFIRM {
                        armed = true;
                        writeln!(stdout, "ARMED")?;
                        stdout.flush()?;
                    }
                }
            }
            if let Some(v) = verdict {
                break v;
            }
            if began.elapsed() > GIVE_UP {
                break "TIMEOUT".to_string();
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}

// ------------------------------------------------------------ packet rate

/// The baseline's only ingress policy for the receiver: allow everything.
const PPS_ALLOW_INGRESS: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: bench-allow-ingress
spec:
  order: 5000
  selector: all()
  types: [Ingress]
  ingress:
  - action: Allow
";

/// Egress from every endpoint is allowed in both configurations.
const PPS_ALLOW_EGRESS: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: bench-allow-egress
spec:
  order: 5000
  selector: all()
  types: [Egress]
  egress:
  - action: Allow
";

/// `count` NetworkPolicies selecting the receiver, distinct orders: all but
/// the last allow UDP/5201 from some other /32; the last (highest order,
/// so evaluated last) allows the client.
fn pps_policies(count: usize) -> String {
    let mut s = String::new();
    for i in 0..count {
        let rule = if i + 1 == count {
            "  - action: Allow\n    source:\n      selector: role == 'client'\n".to_string()
        } else {
            format!(
                "  - action: Allow\n    protocol: UDP\n    source:\n      nets: [10.{}.{}.{}/32]\n    destination:\n      ports: [5201]\n",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            )
        };
        s.push_str(&format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: pps-{i:04}\n  namespace: {NS}\nspec:\n  order: {}\n  selector: role == 'server'\n  types: [Ingress]\n  ingress:\n{rule}---\n",
            i + 1
        ));
    }
    s
}

/// Rule lines of the receiver's ingress chain that jump to a policy chain.
fn policy_jumps(lab: &Lab, iface: &str) -> Result<usize> {
    let chain = format!("cali-tw-{iface}");
    let out = lab.exec_out(HOST, &["nft", "list", "chain", "inet", "calico", &chain])?;
    Ok(out.lines().filter(|l| l.contains("jump cali-pi-")).count())
}

/// One `iperf3 -u -l 64 -b 0` run from the client to the server; returns
/// (sent pps, delivered pps).
fn iperf(lab: &Lab, client: &Workload, server: &Workload, secs: usize) -> Result<(f64, f64)> {
    let log = lab.dir.join("iperf3-server.log");
    let mut srv = lab
        .exec(
            &server.id,
            &[
                "timeout",
                &(secs + 30).to_string(),
                "iperf3",
                "-s",
                "-1",
                "-p",
                "5201",
            ],
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::null())
        .spawn()?;
    let mut result = None;
    for _ in 0..50 {
        let o = lab
            .exec(
                &client.id,
                &[
                    "iperf3",
                    "-u",
                    "-l",
                    "64",
                    "-b",
                    "0",
                    "-t",
                    &secs.to_string(),
                    "-c",
                    &server.ip.to_string(),
                    "-p",
                    "5201",
                    "-J",
                ],
            )
            .stdin(Stdio::null())
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if o.status.success() && v["error"].is_null() {
            result = Some(v);
            break;
        }
        // The server may not listen yet.
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = srv.wait();
    let v = result.ok_or_else(|| anyhow!("iperf3 did not run; see {}", log.display()))?;
    // iperf3 3.12: `sum_sent` is the client's count, `sum_received` the
    // server's (`packets` there counts sequence numbers, received + lost).
    let field = |sum: &str, k: &str| -> Result<f64> {
        v["end"][sum][k]
            .as_f64()
            .with_context(|| format!("iperf3 -J: no end.{sum}.{k}"))
    };
    let sent = field("sum_sent", "packets")? / field("sum_sent", "seconds")?;
    let delivered = (field("sum_received", "packets")? - field("sum_received", "lost_packets")?)
        / field("sum_received", "seconds")?;
    Ok((sent, delivered))
}

/// A table of our own on the host (not the agent's) counting the test
/// flow's packets by conntrack state, before Calico's forward chain runs.
fn ct_counter_table(server: &Workload) -> String {
    format!(
        "table ip calico-bench-ct {{
  counter new {{}}
  counter established {{}}
  chain count {{
    type filter hook forward priority -10; policy accept;
    ip daddr {ip} udp dport 5201 ct state new counter name new
    ip daddr {ip} udp dport 5201 ct state established counter name established
  }}
}}
",
        ip = server.ip
    )
}

/// (new, established) packet counts of the test flow so far.
fn ct_counts(lab: &Lab) -> Result<(u64, u64)> {
    let mut out = [0u64; 2];
    for (i, name) in ["new", "established"].iter().enumerate() {
        let text = lab.exec_out(
            HOST,
            &["nft", "list", "counter", "ip", "calico-bench-ct", name],
        )?;
        out[i] = text
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .context("no packet count in nft list counter")?;
    }
    Ok((out[0], out[1]))
}

pub fn pps(args: &[String]) -> Result<()> {
    let mut o = Opts::parse(args, "/tmp/calico-bench-pps", "bp-")?;
    let rounds = o.num("rounds", 6)?;
    let count = o.num("policies", 1000)?;
    let secs = o.num("seconds", 5)?;
    o.done()?;
    println!(
        "pps: one-host lab in {} (namespaces {}*)",
        o.dir.display(),
        o.prefix
    );
    let lab = Lab::up(&o.dir, &o.prefix, "local", None)?;
    let server = lab.add_workload("server", &[("role", "server")])?;
    let client = lab.add_workload("client", &[("role", "client")])?;
    lab.apply("egress.yaml", PPS_ALLOW_EGRESS)?;
    let policies = lab.dir.join("policies.yaml");
    std::fs::write(&policies, pps_policies(count))?;
    let ingress = lab.dir.join("allow-ingress.yaml");
    std::fs::write(&ingress, PPS_ALLOW_INGRESS)?;
    let ct_table = lab.dir.join("ct-counters.nft");
    std::fs::write(&ct_table, ct_counter_table(&server))?;
    lab.exec_out(HOST, &["nft", "-f", ct_table.to_str().unwrap()])?;
    let mut base = Vec::new();
    let mut with = Vec::new();
    for r in 0..rounds {
        for with_policies in [false, true] {
            // Switch: the allow-all GNP off and the N policies on, or back.
            let (on, off, want) = if with_policies {
                (&policies, &ingress, count)
            } else {
                (&ingress, &policies, 1)
            };
            lab.calicoctl(&["apply", "-f", on.to_str().unwrap()])?;
            if r > 0 || with_policies {
                lab.calicoctl(&["delete", "-f", off.to_str().unwrap()])?;
            }
            lab.wait_for(
                &format!("{want} policy jumps in the receiver's chain"),
                Duration::from_secs(60),
                || Ok(policy_jumps(&lab, &server.iface)? == want),
            )?;
            let before = ct_counts(&lab)?;
            let (sent, delivered) = iperf(&lab, &client, &server, secs)?;
            let after = ct_counts(&lab)?;
            println!(
                "pps: round {} {:>4} policies on the receiver: sent {:.1} kpps, delivered {:.1} kpps; UDP packets forwarded as conntrack new {}, established {}",
                r + 1,
                want,
                sent / 1e3,
                delivered / 1e3,
                after.0 - before.0,
                after.1 - before.1
            );
            if with_policies {
                with.push(delivered);
            } else {
                base.push(delivered);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ratios: Vec<String> = base
        .iter()
        .zip(&with)
        .map(|(b, w)| format!("{:.3}", w / b))
        .collect();
    println!(
        "pps: 64-byte UDP, {secs} s per run, {rounds} rounds: no policy {:.1} kpps, {count} policies {:.1} kpps (means); ratio {:.3} (per round {})",
        mean(&base) / 1e3,
        mean(&with) / 1e3,
        mean(&with) / mean(&base),
        ratios.join(", ")
    );
    Ok(())
}
