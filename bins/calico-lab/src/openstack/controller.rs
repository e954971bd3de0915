//! The lab's OpenStack controller: MariaDB and Debian's neutron-server with
//! the `calico` mechanism driver, inside the fabric namespace (so it reaches
//! the lab's etcd there, and its ports never touch the machine's own
//! loopback). Configured as the article says (`core_plugin = ml2`,
//! `service_plugins = router`, the article's `ml2_conf.ini`), plus the
//! lines a lab needs: Keystone on the same loopback (`keystone`), no
//! message bus (`fake://`) unless RabbitMQ is asked for, and `[calico]`
//! pointing at the lab's datastore.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::lab::{say, sibling};
use crate::netns::{exec, exec_ok, ip, spawn};
use crate::procs::{self, Until};
use crate::state::{Datastore, LabState};
use crate::topology::fabric_ns;

use super::{keystone, rabbitmq};

/// neutron-server's message bus: none (the driver needs none), or RabbitMQ
/// as the article configures it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, clap::ValueEnum)]
pub enum MessageBus {
    #[default]
    None,
    Rabbitmq,
}

/// MariaDB's port on the fabric namespace's loopback.
pub const DB_PORT: u16 = 13306;
/// neutron-server's API port (the first server; others take the next ones).
pub const API_PORT: u16 = 9696;
/// Neutron declares an agent dead this long after its last report (the
/// lab's agents report every 5 s; Neutron's default is 75 s).
pub const AGENT_DOWN_TIME: u64 = 15;

/// What the lab records of its controller, for later commands and `down`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Controller {
    pub dir: PathBuf,
    pub db_pid: Option<u32>,
    /// neutron-server parents by API port.
    pub servers: Vec<(u16, u32)>,
    /// calico-dhcp-agent per compute host (its dnsmasqs are its children).
    #[serde(default)]
    pub dhcp_agents: Vec<(String, u32)>,
    /// The stand-in for nova-api-metadata.
    #[serde(default)]
    pub metadata_pid: Option<u32>,
    #[serde(default)]
    pub keystone_pid: Option<u32>,
    #[serde(default)]
    pub message_bus: MessageBus,
    /// RabbitMQ and its epmd, when `message_bus` is RabbitMQ.
    #[serde(default)]
    pub bus_pids: Vec<u32>,
}

impl Controller {
    pub fn endpoint(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    pub fn neutron_conf(&self) -> PathBuf {
        self.dir.join("neutron.conf")
    }

    pub fn ml2_conf(&self) -> PathBuf {
        self.dir.join("ml2_conf.ini")
    }

    /// The admin's clouds.yaml (cloud `calico-lab-<port>` per server).
    pub fn clouds_yaml(&self) -> PathBuf {
        self.dir.join("clouds.yaml")
    }

    /// Every process of the controller: the servers with their forked
    /// workers and co-processes (a worker outliving its parent would keep
    /// serving), the DHCP agents, the metadata stand-in, Keystone, the
    /// message bus and MariaDB.
    pub fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .servers
            .iter()
            .flat_map(|(_, p)| procs::with_descendants(*p))
            .collect();
        v.extend(
            self.dhcp_agents
                .iter()
                .flat_map(|(_, p)| procs::with_descendants(*p)),
        );
        v.extend(self.metadata_pid);
        v.extend(self.keystone_pid);
        v.extend(
            self.bus_pids
                .iter()
                .flat_map(|p| procs::with_descendants(*p)),
        );
        v.extend(self.db_pid);
        v
    }
}

/// The article's ml2_conf.ini (its `[ml2_type_flat]` physnet and VNI range
/// included).
pub const ML2_CONF: &str = "[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = calico
extension_drivers = port_security
[ml2_type_flat]
flat_networks = provider
[ml2_type_vxlan]
vni_ranges = 1:10000
[securitygroup]
enable_ipset = True
";

/// The `[calico]` lines that point at the lab's datastore.
pub fn calico_datastore_lines(state: &LabState) -> Result<String> {
    Ok(match &state.datastore {
        Datastore::Local { path } => format!(
            "datastore_type = local\nlocal_datastore_path = {}\n",
            path.display()
        ),
        Datastore::Etcd { endpoint, .. } => {
            let hostport = endpoint.trim_start_matches("http://");
            let (host, p) = hostport.rsplit_once(':').context("etcd endpoint")?;
            format!("etcd_host = {host}\netcd_port = {p}\n")
        }
    })
}

fn neutron_conf(dir: &Path, state: &LabState, port: u16) -> Result<String> {
    let d = dir.display();
    let calico = calico_datastore_lines(state)?;
    let bus = state.openstack.as_ref().map(|c| c.message_bus);
    let transport_url = match bus.unwrap_or_default() {
        MessageBus::None => "fake://".to_string(),
        MessageBus::Rabbitmq => rabbitmq::transport_url(),
    };
    Ok(format!(
        "[DEFAULT]
core_plugin = ml2
service_plugins = router
allow_overlapping_ips = True
auth_strategy = keystone
transport_url = {transport_url}
bind_host = 127.0.0.1
bind_port = {port}
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 0
api_paste_config = /etc/neutron/api-paste.ini
state_path = {d}/state
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
agent_down_time = {AGENT_DOWN_TIME}
log_dir = {d}/log
log_file = neutron-server-{port}.log
[database]
connection = mysql+pymysql://neutron:neutron@127.0.0.1:{DB_PORT}/neutron
[oslo_concurrency]
lock_path = {d}/lock
[quotas]
quota_network = -1
quota_subnet = -1
quota_port = -1
quota_security_group = -1
quota_security_group_rule = -1
quota_router = -1
quota_floatingip = -1
{authtoken}[calico]
{calico}calico_neutron_path = {}
status_poll_secs = 2
",
        sibling("calico-neutron")?.display(),
        authtoken = keystone::authtoken_section(),
    ))
}

/// The repository's driver, put first on neutron-server's Python path, so
/// the lab runs the shim of this checkout (`setup.sh --openstack` installed
/// the package and its entry points).
fn shim_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openstack");
    p.join("networking_calico_rs").exists().then_some(p)
}

fn check_installed() -> Result<()> {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import networking_calico_rs, neutron"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let tools = ["neutron-server", "mariadbd", "keystone-manage"];
    if !ok || tools.iter().any(|t| which(t).is_none()) {
        bail!(
            "neutron-server, MariaDB, Keystone or the calico driver is not installed: \
             run `bash scripts/setup.sh --openstack` first"
        );
    }
    Ok(())
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.exists())
    })
}

/// Starts MariaDB, Keystone, the message bus if any and one
/// neutron-server; records them in the lab state.
pub fn start(state: &mut LabState, bus: MessageBus) -> Result<()> {
    check_installed()?;
    let dir = state.dir.join("openstack");
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["state", "log", "lock", "db"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let fabric = fabric_ns();
    ip(&["-n", &fabric, "link", "set", "lo", "up"])?;
    state.openstack = Some(Controller {
        dir: dir.clone(),
        message_bus: bus,
        ..Controller::default()
    });
    state.save()?;
    let services = match bus {
        MessageBus::None => "MariaDB, Keystone and neutron-server",
        MessageBus::Rabbitmq => "MariaDB, Keystone, RabbitMQ and neutron-server",
    };
    say(&format!(
        "starting {services} (ML2, mechanism_drivers = calico) in the fabric"
    ));
    start_db(state, &dir)?;
    if bus == MessageBus::Rabbitmq {
        let pids = rabbitmq::start(&dir)?;
        if let Some(c) = state.openstack.as_mut() {
            c.bus_pids = pids;
        }
        state.save()?;
    }
    let pid = keystone::start(&dir, &Controller::endpoint(API_PORT))?;
    if let Some(c) = state.openstack.as_mut() {
        c.keystone_pid = Some(pid);
    }
    state.save()?;
    std::fs::write(dir.join("ml2_conf.ini"), ML2_CONF)?;
    std::fs::write(
        dir.join("neutron.conf"),
        neutron_conf(&dir, state, API_PORT)?,
    )?;
    let ctl = state.openstack.clone().expect("set above");
    let out = exec(
        &fabric,
        &[
            "neutron-db-manage",
            "--config-file",
            &ctl.neutron_conf().display().to_string(),
            "--config-file",
            &ctl.ml2_conf().display().to_string(),
            "upgrade",
            "heads",
        ],
    );
    out.context("neutron-db-manage upgrade heads failed")?;
    start_server(state, API_PORT)
}

fn start_db(state: &mut LabState, dir: &Path) -> Result<()> {
    let fabric = fabric_ns();
    let datadir = dir.join("db").display().to_string();
    exec(
        &fabric,
        &[
            "mariadb-install-db",
            "--no-defaults",
            "--user=root",
            &format!("--datadir={datadir}"),
            "--auth-root-authentication-method=normal",
        ],
    )
    .context("mariadb-install-db failed")?;
    let socket = dir.join("mysql.sock").display().to_string();
    let pid = spawn(
        &fabric,
        &[
            "mariadbd",
            "--no-defaults",
            "--user=root",
            &format!("--datadir={datadir}"),
            "--bind-address=127.0.0.1",
            &format!("--port={DB_PORT}"),
            &format!("--socket={socket}"),
            "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=0",
        ],
        &[],
        &dir.join("log/mariadb.log"),
    )?;
    if let Some(c) = state.openstack.as_mut() {
        c.db_pid = Some(pid);
    }
    state.save()?;
    let client = |sql: &str| {
        exec_ok(
            &fabric,
            &[
                "mariadb",
                "--no-defaults",
                "-S",
                &socket,
                "-uroot",
                "-e",
                sql,
            ],
        )
    };
    wait_for("MariaDB", Duration::from_secs(30), || client("SELECT 1"))?;
    for service in ["neutron", "keystone"] {
        let setup = format!(
            "CREATE DATABASE {service}; \
             CREATE USER '{service}'@'127.0.0.1' IDENTIFIED BY '{service}'; \
             GRANT ALL ON {service}.* TO '{service}'@'127.0.0.1';"
        );
        if !client(&setup) {
            bail!("cannot create the {service} database");
        }
    }
    Ok(())
}

/// Starts (another) neutron-server on `port` over the same database and
/// datastore, and waits until its API answers.
pub fn start_server(state: &mut LabState, port: u16) -> Result<()> {
    let ctl = state
        .openstack
        .clone()
        .context("no OpenStack controller in this lab")?;
    let conf = ctl.dir.join(format!("neutron-{port}.conf"));
    std::fs::write(&conf, neutron_conf(&ctl.dir, state, port)?)?;
    let env: Vec<(String, String)> = shim_dir()
        .map(|p| vec![("PYTHONPATH".to_string(), p.display().to_string())])
        .unwrap_or_default();
    let pid = spawn(
        &fabric_ns(),
        &[
            "/usr/bin/python3",
            "/usr/bin/neutron-server",
            "--config-file",
            &conf.display().to_string(),
            "--config-file",
            &ctl.ml2_conf().display().to_string(),
        ],
        &env,
        &ctl.dir.join(format!("log/neutron-server-{port}.out")),
    )?;
    if let Some(c) = state.openstack.as_mut() {
        c.servers.push((port, pid));
        let ports: Vec<u16> = c.servers.iter().map(|(p, _)| *p).collect();
        std::fs::write(c.clouds_yaml(), keystone::clouds_yaml(&ports))?;
    }
    state.save()?;
    let me = sibling("calico-lab")?.display().to_string();
    let addr = format!("127.0.0.1:{port}");
    wait_for("neutron-server", Duration::from_secs(90), || {
        exec_ok(
            &fabric_ns(),
            // The version list: the one resource that needs no token.
            &[&me, "internal-http-ok", &addr, "/"],
        )
    })
    .with_context(|| format!("see {}", ctl.dir.join("log").display()))
}

/// Stops the neutron-server on `port` (SIGTERM: its workers stop with it
/// and the leader resigns).
pub fn stop_server(state: &mut LabState, port: u16) -> Result<()> {
    let Some(ctl) = state.openstack.as_mut() else {
        bail!("no OpenStack controller in this lab")
    };
    let pids: Vec<u32> = ctl
        .servers
        .iter()
        .filter(|(p, _)| *p == port)
        .flat_map(|(_, pid)| procs::with_descendants(*pid))
        .collect();
    ctl.servers.retain(|(p, _)| *p != port);
    procs::stop(&pids, Until::Exited)?;
    state.save()
}

pub(super) fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !ok() {
        if Instant::now() > deadline {
            bail!("{what} did not come up within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

/// Runs the `openstack` CLI as the lab's admin against the first
/// neutron-server, inside the fabric namespace; returns stdout.
pub fn openstack(args: &[&str]) -> Result<String> {
    run_openstack(&keystone::cli_env(), args)
}

/// The same against the neutron-server on `port` of the lab in `dir` (the
/// catalog names only the first one: its clouds.yaml names each).
pub fn openstack_at(dir: &Path, port: u16, args: &[&str]) -> Result<String> {
    let env = [
        (
            "OS_CLIENT_CONFIG_FILE",
            dir.join("openstack/clouds.yaml").display().to_string(),
        ),
        ("OS_CLOUD", format!("calico-lab-{port}")),
    ];
    run_openstack(&env, args)
}

fn run_openstack(env: &[(&str, String)], args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &fabric_ns(), "openstack"])
        .env_remove("OS_CLOUD")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .context("cannot run the openstack CLI (apt-get install python3-openstackclient)")?;
    if !out.status.success() {
        bail!(
            "openstack {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `openstack ... -f json`, parsed.
pub fn openstack_json(args: &[&str]) -> Result<serde_json::Value> {
    let mut a = args.to_vec();
    a.extend(["-f", "json"]);
    let text = openstack(&a)?;
    serde_json::from_str(&text).with_context(|| format!("openstack {}: not JSON", args.join(" ")))
}
