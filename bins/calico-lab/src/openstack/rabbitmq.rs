//! The controller's message bus when asked for (`--message-bus rabbitmq`,
//! the article's `transport_url = rabbit://…`): Debian's rabbitmq-server in
//! the fabric namespace, its state under the lab's directory. The driver
//! does not use the bus (agent rows and port status go straight to
//! Neutron's database), so this proves that neutron-server with a real bus
//! behaves as without one.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::spawn;
use crate::topology::fabric_ns;

/// AMQP's port on the fabric namespace's loopback.
pub const PORT: u16 = 5672;

/// neutron.conf's `transport_url` (RabbitMQ's default user, allowed from
/// loopback only).
pub fn transport_url() -> String {
    format!("rabbit://guest:guest@127.0.0.1:{PORT}/")
}

/// Starts epmd and RabbitMQ; returns both pids. epmd runs in the
/// foreground first, so the lab owns it: the broker would otherwise start a
/// daemonised one, which no pid of the lab's would lead to.
pub fn start(dir: &Path) -> Result<Vec<u32>> {
    let base = dir.join("rabbitmq");
    std::fs::create_dir_all(&base)?;
    let fabric = fabric_ns();
    let epmd = spawn(
        &fabric,
        &["epmd", "-address", "127.0.0.1"],
        &[],
        &dir.join("log/epmd.log"),
    )
    .context("epmd (apt-get install rabbitmq-server)")?;
    let at = |sub: &str| base.join(sub).display().to_string();
    let env: Vec<(String, String)> = [
        ("HOME", at("")),
        ("RABBITMQ_NODENAME", "rabbit@localhost".into()),
        ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
        ("RABBITMQ_NODE_PORT", PORT.to_string()),
        ("RABBITMQ_MNESIA_BASE", at("mnesia")),
        ("RABBITMQ_LOG_BASE", dir.join("log").display().to_string()),
        ("RABBITMQ_ENABLED_PLUGINS_FILE", at("enabled_plugins")),
        ("RABBITMQ_CONFIG_FILE", at("rabbitmq")),
        ("RABBITMQ_PID_FILE", at("rabbitmq.pid")),
        ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let out = dir.join("log/rabbitmq.out");
    let broker = spawn(
        &fabric,
        &["/usr/lib/rabbitmq/bin/rabbitmq-server"],
        &env,
        &out,
    )?;
    super::controller::wait_for("RabbitMQ", Duration::from_secs(60), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("Starting broker... completed"))
    })
    .with_context(|| format!("see {}", out.display()))?;
    Ok(vec![broker, epmd])
}
