//! The agent's settings: neutron.conf as upstream's agent reads it
//! (`[DEFAULT] host`, `state_path`/`dhcp_confs`, `dns_domain`, the lease
//! and renewal times; `[calico]` for the datastore and region), and our
//! flags, which win over the files.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};
use calico_datastore::DatastoreConfig;
use calico_dhcp::dnsmasq::Settings;
use calico_openstack::options::{NeutronConf, Options};
use calico_openstack::Region;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "calico-dhcp-agent",
    version,
    about = "DHCP for the OpenStack VMs of this compute host: one dnsmasq per Neutron network, \
             from the subnets and endpoints the Neutron driver `calico` writes"
)]
pub struct Args {
    /// neutron.conf and friends (later files override earlier ones).
    #[arg(long = "config-file")]
    pub config_files: Vec<PathBuf>,
    /// This host's name as Nova and Neutron know it ([DEFAULT] host, else the hostname).
    #[arg(long)]
    pub host: Option<String>,
    /// calico-node's workload MTU file.
    #[arg(long, env = "CALICO_MTU_FILE", default_value = "/var/lib/calico/mtu")]
    pub mtu_file: PathBuf,
    /// Where each network's dnsmasq files go ([DEFAULT] dhcp_confs).
    #[arg(long)]
    pub dhcp_confs: Option<PathBuf>,
    /// The dnsmasq program.
    #[arg(long, default_value = "dnsmasq")]
    pub dnsmasq: String,
}

pub struct AgentConfig {
    pub host: String,
    pub region: Region,
    pub datastore: DatastoreConfig,
    pub settings: Settings,
    pub mtu_file: PathBuf,
    pub dnsmasq: String,
}

impl AgentConfig {
    pub fn load(args: Args) -> Result<AgentConfig> {
        let conf = NeutronConf::read(&args.config_files).map_err(|e| anyhow!(e))?;
        let options = Options::from_conf(&conf).map_err(|e| anyhow!(e))?;
        let region = options.translation().map_err(|e| anyhow!(e))?.region;
        let host = match args
            .host
            .or_else(|| conf.get("DEFAULT", "host").map(str::to_string))
        {
            Some(h) => h,
            None => hostname()?,
        };
        let state_path = conf
            .get("DEFAULT", "state_path")
            .unwrap_or("/var/lib/neutron");
        let confs = args
            .dhcp_confs
            .or_else(|| {
                conf.get("DEFAULT", "dhcp_confs")
                    .map(|d| d.replace("$state_path", state_path).into())
            })
            .unwrap_or_else(|| PathBuf::from(state_path).join("dhcp"));
        let mut settings = Settings::new(confs);
        if let Some(d) = conf.get("DEFAULT", "dns_domain") {
            settings.domain = Some(d.trim_end_matches('.').to_string()).filter(|d| !d.is_empty());
        }
        settings.lease = match seconds(&conf, "dhcp_lease_duration")? {
            Some(-1) => None,
            Some(s) => Some(Duration::from_secs(s.max(0) as u64)),
            None => settings.lease,
        };
        let positive = |s: Option<i64>| s.filter(|s| *s > 0).map(|s| Duration::from_secs(s as u64));
        settings.renewal = positive(seconds(&conf, "dhcp_renewal_time")?);
        settings.rebinding = positive(seconds(&conf, "dhcp_rebinding_time")?);
        Ok(AgentConfig {
            host,
            region,
            datastore: options.datastore().map_err(|e| anyhow!(e))?,
            settings,
            mtu_file: args.mtu_file,
            dnsmasq: args.dnsmasq,
        })
    }
}

fn seconds(conf: &NeutronConf, key: &str) -> Result<Option<i64>> {
    conf.get("DEFAULT", key)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| anyhow!("[DEFAULT] {key}: {v:?} is not a number of seconds"))
        })
        .transpose()
}

fn hostname() -> Result<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(text.trim().to_string())
}
