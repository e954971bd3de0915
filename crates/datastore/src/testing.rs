//! Test helpers shared with other crates' tests: a throw-away etcd server.
//!
//! ```no_run
//! let etcd = calico_datastore::testing::EtcdServer::start();
//! let store = calico_datastore::EtcdStore::connect(&etcd.config()).unwrap();
//! // ... the server is killed and its data dir removed when `etcd` drops.
//! ```

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{DatastoreConfig, EtcdConfig, EtcdStore};

/// Where the Debian `etcd-server` package installs etcd.
pub const DEFAULT_ETCD_BINARY: &str = "/usr/bin/etcd";
/// Environment variable overriding the etcd binary path.
pub const ETCD_BINARY_ENV: &str = "CALICO_TEST_ETCD_BINARY";

/// How long etcd gets to elect itself and answer /health.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts with fresh ports (another process may grab a port between our
/// probe bind and etcd's bind).
const START_ATTEMPTS: usize = 5;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A single-member etcd on 127.0.0.1 with random free client and peer ports
/// and a private temporary data dir. Drop kills that process (by its PID,
/// via the child handle) and removes the directory.
pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    tls: Option<TestPki>,
}

/// Certificates for a TLS test server, made by [`TestPki::generate`]:
/// one CA signing a server certificate (SAN 127.0.0.1/localhost) and a
/// client certificate. All files are PEM; keys are PKCS#8 P-256.
#[derive(Clone, Debug)]
pub struct TestPki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generate into `dir` with the `openssl` command-line tool (Err if it
    /// is missing or fails).
    pub fn generate(dir: &Path) -> Result<TestPki, String> {
        let pki = TestPki {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        let ca_key = dir.join("ca.key");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let openssl = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run openssl (apt-get install openssl): {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let p = |p: &Path| p.to_string_lossy().into_owned();
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        let (ca_key_s, ca_cert_s) = (p(&ca_key), p(&pki.ca_cert));
        ca.extend([
            "-keyout",
            &ca_key_s,
            "-out",
            &ca_cert_s,
            "-days",
            "2",
            "-subj",
            "/CN=calico-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&ca)?;
        for (name, cert, key, cn) in [
            ("server", &pki.server_cert, &pki.server_key, "127.0.0.1"),
            (
                "client",
                &pki.client_cert,
                &pki.client_key,
                "calico-test-client",
            ),
        ] {
            let ext = dir.join(format!("{name}.ext"));
            fs::write(
                &ext,
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
                 extendedKeyUsage=serverAuth,clientAuth\n\
                 basicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\n",
            )
            .map_err(|e| format!("cannot write {}: {e}", ext.display()))?;
            let csr = dir.join(format!("{name}.csr"));
            let (key_s, csr_s, cert_s, ext_s) = (p(key), p(&csr), p(cert), p(&ext));
            let subj = format!("/CN={cn}");
            let mut req = vec!["req"];
            req.extend(ec);
            req.extend(["-keyout", &key_s, "-out", &csr_s, "-subj", &subj]);
            openssl(&req)?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr_s,
                "-CA",
                &ca_cert_s,
                "-CAkey",
                &ca_key_s,
                "-CAcreateserial",
                "-out",
                &cert_s,
                "-days",
                "2",
                "-extfile",
                &ext_s,
            ])?;
        }
        Ok(pki)
    }
}

impl EtcdServer {
    /// Start etcd and wait until it answers. Panics (with a hint to
    /// `apt-get install etcd-server`) if etcd is not installed.
    pub fn start() -> EtcdServer {
        Self::start_inner(None)
    }

    /// Start etcd serving clients over TLS with the given certificates,
    /// requiring client certificates signed by the same CA. `config()`
    /// then carries the CA and the client certificate.
    pub fn start_tls(pki: &TestPki) -> EtcdServer {
        Self::start_inner(Some(pki.clone()))
    }

    fn start_inner(tls: Option<TestPki>) -> EtcdServer {
        let binary = etcd_binary();
        if !binary.exists() {
            panic!(
                "etcd binary not found at {}: install it with `apt-get install etcd-server` \
                 (or point {ETCD_BINARY_ENV} at an etcd 3.4+ binary)",
                binary.display()
            );
        }
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&binary, tls.clone()) {
                Ok(server) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("cannot start etcd for tests: {last_err}");
    }

    fn try_start(binary: &Path, tls: Option<TestPki>) -> Result<EtcdServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("calico-test-etcd-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        if client_port == peer_port {
            return Err("got the same port twice".into());
        }
        let name = format!(
            "calico-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log_path = dir.path().join("etcd.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("cannot create log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone log: {e}"))?;
        let mut cmd = Command::new(binary);
        cmd.arg("--name")
            .arg(&name)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{name}={peer_url}"))
            .arg("--initial-cluster-state")
            .arg("new")
            // Faster raft timings: the single member elects itself sooner,
            // and the minimum lease TTL drops from 2 s to 1 s, which keeps
            // lease tests short.
            .arg("--heartbeat-interval")
            .arg("25")
            .arg("--election-timeout")
            .arg("250")
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr")
            .arg("--log-level")
            .arg("error")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(pki) = &tls {
            cmd.arg("--cert-file")
                .arg(&pki.server_cert)
                .arg("--key-file")
                .arg(&pki.server_key)
                .arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&pki.ca_cert);
        }
        // etcd reads its flags from ETCD_* variables too; the caller's
        // environment must not reconfigure the test server.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let mut server = EtcdServer {
            child: Some(child),
            dir,
            client_port,
            tls,
        };
        server.wait_ready(&log_path)?;
        Ok(server)
    }

    fn wait_ready(&mut self, log_path: &Path) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.client_port));
        loop {
            let child = self.child.as_mut().expect("child present until drop");
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(log_path).unwrap_or_default();
                return Err(format!("etcd exited with {status}: {}", tail(&log)));
            }
            // Healthy means elected and serving; and the listener must be
            // ours, not another test's etcd that got the same port.
            let pid = child.id();
            if listens_on(pid, self.client_port) && self.healthy(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(log_path).unwrap_or_default();
                return Err(format!(
                    "etcd did not become healthy within {START_TIMEOUT:?}: {}",
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn healthy(&self, addr: SocketAddr) -> bool {
        if self.tls.is_none() {
            return healthy_http(addr);
        }
        // Over TLS, ask through the real client (it needs a leader, since
        // it requires one on every request).
        let cfg = EtcdConfig {
            timeout: Duration::from_millis(500),
            ..self.config()
        };
        EtcdStore::connect(&cfg).is_ok()
    }

    /// `http://127.0.0.1:<port>` (`https://` for a TLS server)
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Config for this server, with a short timeout suited to tests (and,
    /// for a TLS server, the CA and client certificate files).
    pub fn config(&self) -> EtcdConfig {
        let mut cfg = EtcdConfig {
            endpoints: vec![self.endpoint()],
            timeout: Duration::from_secs(5),
            ..EtcdConfig::default()
        };
        if let Some(pki) = &self.tls {
            cfg.ca_cert_file = Some(pki.ca_cert.clone());
            cfg.cert_file = Some(pki.client_cert.clone());
            cfg.key_file = Some(pki.client_key.clone());
        }
        cfg
    }

    pub fn datastore_config(&self) -> DatastoreConfig {
        DatastoreConfig::Etcd(self.config())
    }

    /// Connect a store to this server (panics on failure).
    pub fn connect(&self) -> EtcdStore {
        EtcdStore::connect(&self.config())
            .unwrap_or_else(|e| panic!("cannot connect to test etcd: {e}"))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kill the server now (to test lost connections). Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        // `dir` (a TempDir) is removed after this, when its field drops.
    }
}

fn etcd_binary() -> PathBuf {
    std::env::var_os(ETCD_BINARY_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BINARY))
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read local addr: {e}"))
}

fn healthy_http(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// Whether process `pid` owns the listening socket on 127.0.0.1:`port`
/// (Linux: match the socket inode in /proc/net/tcp with the process's fds).
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return true; // cannot tell; trust the health check
    };
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            (cols.len() > 9 && cols[1] == local && cols[3] == "0A").then(|| cols[9].to_string())
        })
        .collect();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .map(|target| {
                let t = target.to_string_lossy();
                inodes.iter().any(|i| t == format!("socket:[{i}]"))
            })
            .unwrap_or(false)
    })
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
