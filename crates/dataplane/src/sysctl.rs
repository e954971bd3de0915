//! Kernel parameters (`/proc/sys`), behind a trait.
//!
//! Paths are relative to `/proc/sys` and use `/` separators
//! (`net/ipv4/conf/tap1/proxy_arp`), because interface names may contain
//! dots (`vxlan.calico`). Network sysctls are per network namespace: the
//! values seen and written are those of the calling thread's namespace.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysctlErrorKind {
    /// The parameter does not exist (e.g. the interface is not there yet).
    NotFound,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlError {
    pub path: String,
    pub kind: SysctlErrorKind,
    pub cause: String,
}

impl std::fmt::Display for SysctlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sysctl {}: {}", self.path, self.cause)
    }
}

impl std::error::Error for SysctlError {}

impl From<SysctlError> for crate::DataplaneError {
    fn from(e: SysctlError) -> Self {
        crate::DataplaneError::Sysctl {
            path: e.path,
            cause: e.cause,
        }
    }
}

pub trait SysctlBackend {
    /// The trimmed value, or `None` if the parameter does not exist.
    fn read(&mut self, path: &str) -> Result<Option<String>, SysctlError>;
    fn write(&mut self, path: &str, value: &str) -> Result<(), SysctlError>;
}

impl<T: SysctlBackend + ?Sized> SysctlBackend for Box<T> {
    fn read(&mut self, path: &str) -> Result<Option<String>, SysctlError> {
        (**self).read(path)
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), SysctlError> {
        (**self).write(path, value)
    }
}

/// True if `name` is safe to put into a `/proc/sys` path: the interface-name
/// rule (`^[a-zA-Z0-9_.-]{1,15}$`) minus `.` and `..`.
pub fn valid_iface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// The real backend: files under `/proc/sys` (or another root, for tests).
#[derive(Clone, Debug)]
pub struct ProcSysctl {
    root: PathBuf,
}

impl Default for ProcSysctl {
    fn default() -> Self {
        ProcSysctl {
            root: PathBuf::from("/proc/sys"),
        }
    }
}

impl ProcSysctl {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        ProcSysctl { root: root.into() }
    }

    fn err(path: &str, e: &std::io::Error) -> SysctlError {
        SysctlError {
            path: path.to_string(),
            kind: if e.kind() == std::io::ErrorKind::NotFound {
                SysctlErrorKind::NotFound
            } else {
                SysctlErrorKind::Other
            },
            cause: e.to_string(),
        }
    }
}

impl SysctlBackend for ProcSysctl {
    fn read(&mut self, path: &str) -> Result<Option<String>, SysctlError> {
        match std::fs::read_to_string(self.root.join(path)) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::err(path, &e)),
        }
    }

    fn write(&mut self, path: &str, value: &str) -> Result<(), SysctlError> {
        // No O_CREAT: a missing parameter must fail, not create a file.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.root.join(path))
            .map_err(|e| Self::err(path, &e))?;
        f.write_all(format!("{value}\n").as_bytes())
            .map_err(|e| Self::err(path, &e))
    }
}

#[derive(Debug, Default)]
struct FakeState {
    values: BTreeMap<String, String>,
    writes: Vec<(String, String)>,
}

/// In-memory sysctls. Cloning shares the state.
#[derive(Clone, Debug, Default)]
pub struct FakeSysctl {
    state: Arc<Mutex<FakeState>>,
}

impl FakeSysctl {
    /// A host with IPv6 and the global parameters the managers touch.
    pub fn new() -> Self {
        let f = FakeSysctl::default();
        f.set("net/ipv4/ip_forward", "0");
        f.set("net/ipv6/conf/all/forwarding", "0");
        f
    }

    /// Creates the per-interface parameters, as the kernel does when an
    /// interface appears.
    pub fn add_iface(&self, name: &str) {
        for (p, v) in [
            ("net/ipv4/conf/{}/proxy_arp", "0"),
            ("net/ipv4/conf/{}/forwarding", "0"),
            ("net/ipv4/conf/{}/route_localnet", "0"),
            ("net/ipv4/conf/{}/rp_filter", "2"),
            ("net/ipv4/neigh/{}/proxy_delay", "80"),
            ("net/ipv6/conf/{}/accept_ra", "1"),
            ("net/ipv6/conf/{}/proxy_ndp", "0"),
            ("net/ipv6/conf/{}/forwarding", "0"),
        ] {
            self.set(&p.replace("{}", name), v);
        }
    }

    /// Removes an interface's parameters (interface deleted).
    pub fn remove_iface(&self, name: &str) {
        let conf4 = format!("net/ipv4/conf/{name}/");
        let neigh4 = format!("net/ipv4/neigh/{name}/");
        let conf6 = format!("net/ipv6/conf/{name}/");
        self.st().values.retain(|k, _| {
            !(k.starts_with(&conf4) || k.starts_with(&neigh4) || k.starts_with(&conf6))
        });
    }

    /// Removes every IPv6 parameter (a host without IPv6).
    pub fn disable_ipv6(&self) {
        self.st().values.retain(|k, _| !k.starts_with("net/ipv6/"));
    }

    pub fn set(&self, path: &str, value: &str) {
        self.st().values.insert(path.to_string(), value.to_string());
    }

    pub fn get(&self, path: &str) -> Option<String> {
        self.st().values.get(path).cloned()
    }

    pub fn writes(&self) -> Vec<(String, String)> {
        self.st().writes.clone()
    }

    pub fn take_writes(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.st().writes)
    }

    fn st(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SysctlBackend for FakeSysctl {
    fn read(&mut self, path: &str) -> Result<Option<String>, SysctlError> {
        Ok(self.st().values.get(path).cloned())
    }

    fn write(&mut self, path: &str, value: &str) -> Result<(), SysctlError> {
        let mut st = self.st();
        match st.values.get_mut(path) {
            Some(v) => {
                *v = value.to_string();
                st.writes.push((path.to_string(), value.to_string()));
                Ok(())
            }
            None => Err(SysctlError {
                path: path.to_string(),
                kind: SysctlErrorKind::NotFound,
                cause: "No such file or directory".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_names_that_could_escape_the_path_are_rejected() {
        assert!(valid_iface_name("tap1234567890"));
        assert!(valid_iface_name("vxlan.calico"));
        assert!(!valid_iface_name(".."));
        assert!(!valid_iface_name("a/b"));
        assert!(!valid_iface_name(""));
        assert!(!valid_iface_name("sixteen-chars-xx"));
    }

    #[test]
    fn proc_backend_reads_writes_and_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net/ipv4")).unwrap();
        std::fs::write(dir.path().join("net/ipv4/ip_forward"), "0\n").unwrap();
        let mut b = ProcSysctl::with_root(dir.path());
        assert_eq!(b.read("net/ipv4/ip_forward").unwrap().as_deref(), Some("0"));
        b.write("net/ipv4/ip_forward", "1").unwrap();
        assert_eq!(b.read("net/ipv4/ip_forward").unwrap().as_deref(), Some("1"));
        assert_eq!(b.read("net/ipv4/nope").unwrap(), None);
        let e = b.write("net/ipv4/nope", "1").unwrap_err();
        assert_eq!(e.kind, SysctlErrorKind::NotFound);
        assert!(!dir.path().join("net/ipv4/nope").exists());
    }
}
