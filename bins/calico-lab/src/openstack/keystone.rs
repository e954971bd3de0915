//! The lab's Keystone: Debian's (`python3-keystone`) public API served by
//! its own WSGI test server in the fabric namespace, over the controller's
//! MariaDB, with fernet tokens (SQLite is not an option: its writes failed
//! with "database is locked" under the bootstrap's requests). Bootstrapped as an operator would: an `admin`, a
//! `service` project with the `neutron` user that neutron-server validates
//! tokens with and the `calico` driver lists projects with (both from
//! `[keystone_authtoken]`), and the network service in the catalog.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::lab::sibling;
use crate::netns::{exec, exec_ok, spawn};
use crate::topology::fabric_ns;

/// Keystone's port on the fabric namespace's loopback.
pub const PORT: u16 = 5000;
/// The lab's admin password (the lab is loopback inside its namespace).
pub const ADMIN_PASSWORD: &str = "calico-lab-admin";
const NEUTRON_PASSWORD: &str = "calico-lab-neutron";
/// bcrypt's cheapest rounds: every `openstack` command the lab runs
/// authenticates, and the default (12) costs a quarter second each.
const PASSWORD_HASH_ROUNDS: u32 = 4;

pub fn auth_url() -> String {
    format!("http://127.0.0.1:{PORT}/v3")
}

/// The `openstack` CLI's credentials: the lab's admin in project `admin`.
pub fn cli_env() -> Vec<(&'static str, String)> {
    vec![
        ("OS_AUTH_URL", auth_url()),
        ("OS_IDENTITY_API_VERSION", "3".into()),
        ("OS_USERNAME", "admin".into()),
        ("OS_PASSWORD", ADMIN_PASSWORD.into()),
        ("OS_PROJECT_NAME", "admin".into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
        ("OS_REGION_NAME", "RegionOne".into()),
    ]
}

/// neutron.conf's `[keystone_authtoken]`, as the install guide writes it.
pub fn authtoken_section() -> String {
    format!(
        "[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:{PORT}
auth_url = http://127.0.0.1:{PORT}
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = neutron
password = {NEUTRON_PASSWORD}
"
    )
}

/// A clouds.yaml with the admin's credentials: cloud `calico-lab-<port>`
/// for each neutron-server (the catalog names only the first one), for
/// `openstack --os-cloud` and for an operator's shell in the fabric.
pub fn clouds_yaml(api_ports: &[u16]) -> String {
    let mut out = String::from("clouds:\n");
    for port in api_ports {
        out += &format!(
            "  calico-lab-{port}:
    auth:
      auth_url: {auth_url}
      username: admin
      password: {ADMIN_PASSWORD}
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    network_endpoint_override: http://127.0.0.1:{port}
",
            auth_url = auth_url()
        );
    }
    out
}

fn keystone_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[DEFAULT]
log_file = {d}/log/keystone.log
[database]
connection = mysql+pymysql://keystone:keystone@127.0.0.1:{db_port}/keystone
[token]
provider = fernet
# Four hours: a benchmark creating thousands of ports keeps one token.
expiration = 14400
[fernet_tokens]
key_repository = {d}/fernet-keys
[fernet_receipts]
key_repository = {d}/fernet-keys
[credential]
key_repository = {d}/credential-keys
[identity]
password_hash_rounds = {PASSWORD_HASH_ROUNDS}
",
        db_port = super::controller::DB_PORT
    )
}

/// Creates Keystone's database and keys, starts its API and registers the
/// neutron user and the network service at `neutron_url`. Returns the
/// server's pid.
pub fn start(dir: &Path, neutron_url: &str) -> Result<u32> {
    let conf = dir.join("keystone.conf");
    std::fs::write(&conf, keystone_conf(dir))?;
    let conf = conf.display().to_string();
    let fabric = fabric_ns();
    let manage = |args: &[&str]| -> Result<()> {
        let mut cmd = vec!["keystone-manage", "--config-file", &conf];
        cmd.extend_from_slice(args);
        exec(&fabric, &cmd)
            .map(drop)
            .with_context(|| format!("keystone-manage {}", args[0]))
    };
    manage(&["db_sync"])?;
    let owner = ["--keystone-user", "root", "--keystone-group", "root"];
    manage(&[&["fernet_setup"][..], &owner].concat())?;
    manage(&[&["credential_setup"][..], &owner].concat())?;
    let url = format!("http://127.0.0.1:{PORT}/v3/");
    manage(&[
        "bootstrap",
        "--bootstrap-password",
        ADMIN_PASSWORD,
        "--bootstrap-admin-url",
        &url,
        "--bootstrap-internal-url",
        &url,
        "--bootstrap-public-url",
        &url,
        "--bootstrap-region-id",
        "RegionOne",
    ])?;
    let port = PORT.to_string();
    let pid = spawn(
        &fabric,
        &[
            "keystone-wsgi-public",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--",
            "--config-file",
            &conf,
        ],
        &[],
        &dir.join("log/keystone-wsgi.out"),
    )?;
    let me = sibling("calico-lab")?.display().to_string();
    let addr = format!("127.0.0.1:{PORT}");
    super::controller::wait_for("Keystone", Duration::from_secs(60), || {
        exec_ok(&fabric, &[&me, "internal-http-ok", &addr, "/v3"])
    })?;
    register_neutron(neutron_url)?;
    Ok(pid)
}

/// The service project, the neutron user (admin there, as the install
/// guide has it) and the network endpoints, in one CLI session.
fn register_neutron(neutron_url: &str) -> Result<()> {
    let mut script = vec![
        "project create --domain default service".to_string(),
        format!(
            "user create --domain default --project service --password {NEUTRON_PASSWORD} neutron"
        ),
        "role add --project service --user neutron admin".to_string(),
        "service create --name neutron network".to_string(),
    ];
    for interface in ["public", "internal", "admin"] {
        script.push(format!(
            "endpoint create --region RegionOne network {interface} {neutron_url}"
        ));
    }
    batch(&script)
}

/// Runs `commands` in one `openstack` session (one start-up, one token).
/// The CLI's interactive mode exits 0 whatever a command did: any error
/// text fails the whole.
pub fn batch(commands: &[String]) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &fabric_ns(), "openstack"])
        .envs(cli_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run the openstack CLI (apt-get install python3-openstackclient)")?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(format!("{}\n", commands.join("\n")).as_bytes())?;
    drop(stdin);
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !err.trim().is_empty() {
        bail!("openstack ({}): {}", commands.join("; "), err.trim());
    }
    Ok(())
}
