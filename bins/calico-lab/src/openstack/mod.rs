//! OpenStack in the lab: a controller running neutron-server with the
//! `calico` driver (`controller`), Nova's part played by the lab (`nova`),
//! and `calico-lab openstack`, the article's OpenStack steps end to end.

pub mod controller;
pub mod keystone;
pub mod nova;
pub mod rabbitmq;
pub mod services;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use calico_api::decode::decode_documents;
use calico_calc::reference::World;
use serde_json::Value;

use crate::demo::{matrix_in, table, wait_programmed};
use crate::lab::{self, calicoctl, say, StoreKind};

use crate::state::LabState;
pub use controller::{openstack, openstack_json};

/// The ports the demo probes: ssh, http, PostgreSQL.
const PORTS: [u16; 3] = [22, 80, 5432];

/// A lab with two compute hosts and a running controller.
pub fn up(dir: &Path, store: StoreKind, bus: controller::MessageBus) -> Result<LabState> {
    let opts = lab::LabOptions {
        hosts: 2,
        store,
        routing: lab::Routing::Bgp,
        route_reflectors: 0,
    };
    let mut state = lab::up(dir, &opts)?;
    controller::start(&mut state, bus)?;
    services::start_dhcp_agents(&mut state)?;
    services::start_metadata(&mut state)?;
    wait_agents(&state, Duration::from_secs(60))?;
    Ok(state)
}

/// Waits until Neutron shows every lab host's Calico agent alive.
pub fn wait_agents(state: &LabState, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let agents = openstack_json(&["network", "agent", "list"])?;
        let alive: Vec<&str> = agents
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["Alive"] == Value::Bool(true))
            .filter_map(|a| a["Host"].as_str())
            .collect();
        if state.hosts.iter().all(|h| alive.contains(&h.name.as_str())) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("Calico agents alive in Neutron: {alive:?}; expected every lab host");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until Neutron shows `port` with `status`.
pub fn wait_port_status(port: &str, status: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let p = openstack_json(&["port", "show", port])?;
        if p["status"] == status {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "port {port} is {} after {limit:?}, not {status}",
                p["status"]
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Creates a VM's port on `host` in `network` with `groups`, as Nova asks
/// Neutron to; returns the port's id.
pub fn create_port(name: &str, network: &str, host: &str, groups: &[&str]) -> Result<String> {
    let device = format!("{:x}", fnv(name));
    let mut args = vec![
        "port",
        "create",
        name,
        "--network",
        network,
        "--host",
        host,
        "--device-owner",
        "compute:nova",
        "--device",
        &device,
    ];
    for g in groups {
        args.extend(["--security-group", g]);
    }
    let port = openstack_json(&args)?;
    port["id"]
        .as_str()
        .map(str::to_string)
        .context("port create returned no id")
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The reference evaluator's world: what the driver wrote, read back from
/// the datastore (policies and endpoints of every namespace, global
/// policies), so the matrix checks the kernel against the data.
pub fn world_from_datastore(state: &LabState) -> Result<World> {
    let mut world = World::default();
    for kind in [
        "networkpolicies",
        "globalnetworkpolicies",
        "workloadendpoints",
        "profiles",
    ] {
        let yaml = calicoctl(state, &["get", kind, "-A", "-o", "yaml"], None)
            .or_else(|_| calicoctl(state, &["get", kind, "-o", "yaml"], None))?;
        for d in decode_documents(&yaml).map_err(|e| anyhow::anyhow!("{e:?}"))? {
            world.add(d.resource);
        }
    }
    Ok(world)
}

pub fn run(dir: &Path, store: StoreKind, bus: controller::MessageBus, keep: bool) -> Result<()> {
    let result = run_inner(dir, store, bus);
    if !keep || result.is_err() {
        say("tearing the lab down");
        lab::down(dir)?;
    }
    result
}

fn run_inner(dir: &Path, store: StoreKind, bus: controller::MessageBus) -> Result<()> {
    let mut state = up(dir, store, bus)?;
    say("openstack network agent list: every compute host's Calico agent is alive");
    print!("{}", openstack(&["network", "agent", "list"])?);
    say("a tenant network and subnet (the article's ml2_conf.ini makes it vxlan; Calico routes it at L3)");
    print!(
        "{}",
        openstack(&[
            "network",
            "create",
            "demo-net",
            "-c",
            "name",
            "-c",
            "provider:network_type",
            "-c",
            "status",
        ])?
    );
    openstack(&[
        "subnet",
        "create",
        "demo-subnet",
        "--network",
        "demo-net",
        "--subnet-range",
        "10.65.0.0/24",
    ])?;
    say("security groups as the article's policies: database accepts only web, frontend accepts HTTP");
    for (sg, rules) in [
        ("web", vec![]),
        ("database", vec![vec!["--remote-group", "web"]]),
        (
            "frontend",
            vec![vec!["--protocol", "tcp", "--dst-port", "80"]],
        ),
    ] {
        openstack(&["security", "group", "create", sg])?;
        for r in rules {
            let mut args = vec!["security", "group", "rule", "create", sg, "--ingress"];
            args.extend(r);
            openstack(&args)?;
        }
    }
    say("booting VMs: Neutron binds each port to its host, the lab plugs it as Nova would");
    for (vm, host, sg) in [
        ("frontend", "host1", "frontend"),
        ("web", "host1", "web"),
        ("database", "host2", "database"),
    ] {
        let port = create_port(&format!("{vm}-port"), "demo-net", host, &[sg])?;
        let w = nova::boot(&mut state, vm, &port)?;
        println!("  {:<10} {:<6} {:<12} {}", vm, w.host, w.ip, w.iface);
    }
    for vm in ["frontend", "web", "database"] {
        wait_port_status(&format!("{vm}-port"), "ACTIVE", Duration::from_secs(60))?;
    }
    wait_programmed(&state).context("the agents did not program the VMs")?;
    say("the ports are ACTIVE: each host's agent programmed its VMs and reported back");
    print_ports()?;
    print!(
        "{}",
        calicoctl(
            &state,
            &["get", "workloadendpoints", "-n", "openstack", "-o", "wide"],
            None
        )?
    );
    let world = world_from_datastore(&state)?;
    let m1 = matrix_in(
        "reachability as the security groups say",
        &world,
        &state.workloads,
        &PORTS,
    )?;
    say("a rule added on a running VM: web now accepts ssh (tcp 22) from frontend");
    openstack(&[
        "security",
        "group",
        "rule",
        "create",
        "web",
        "--ingress",
        "--protocol",
        "tcp",
        "--dst-port",
        "22",
        "--remote-group",
        "frontend",
    ])?;
    std::thread::sleep(Duration::from_millis(1500));
    let world = world_from_datastore(&state)?;
    let m2 = matrix_in(
        "reachability after the change",
        &world,
        &state.workloads,
        &PORTS,
    )?;
    if m1 + m2 > 0 {
        bail!(
            "{} probe(s) disagreed with the reference evaluator",
            m1 + m2
        );
    }
    say("every probe agreed with the reference evaluator");
    vm_services(&mut state)
}

/// DHCP leases, metadata, and a floating IP reached from outside, moved
/// to another host.
fn vm_services(state: &mut LabState) -> Result<()> {
    say("each VM got its address, gateway, MTU and name by DHCP from its host's calico-dhcp-agent");
    print!("{}", table(&services::leases_table(state)));
    say("each VM reads its metadata at 169.254.169.254 (DNATed to the controller's metadata service)");
    let mut rows = vec![["VM", "UUID", "NAME"].map(String::from).to_vec()];
    for w in state
        .workloads
        .iter()
        .filter(|w| w.namespace == nova::VM_NAMESPACE)
    {
        let m = services::fetch_metadata(&w.ns)?;
        let field = |k: &str| m[k].as_str().unwrap_or("-").to_string();
        rows.push(vec![w.name.clone(), field("uuid"), field("name")]);
    }
    print!("{}", table(&rows));

    say("a floating IP: an external network and a router, as the article's service_plugins = router gives");
    for args in [
        &[
            "network",
            "create",
            "public",
            "--external",
            "--provider-network-type",
            "flat",
            "--provider-physical-network",
            "provider",
        ][..],
        &[
            "subnet",
            "create",
            "public-subnet",
            "--network",
            "public",
            "--subnet-range",
            "203.0.113.0/24",
            "--no-dhcp",
        ],
        &["router", "create", "router1"],
        &["router", "set", "router1", "--external-gateway", "public"],
        &["router", "add", "subnet", "router1", "demo-subnet"],
    ] {
        openstack(args)?;
    }
    let fip = openstack_json(&[
        "floating",
        "ip",
        "create",
        "public",
        "--port",
        "frontend-port",
    ])?;
    let addr = fip["floating_ip_address"]
        .as_str()
        .context("no floating IP address")?
        .to_string();
    let id = fip["id"].as_str().context("no floating IP id")?.to_string();
    let ip_of =
        |name: &str| -> Result<String> { Ok(state.host(name).context("lab host")?.ip.to_string()) };
    let (host1, host2) = (ip_of("host1")?, ip_of("host2")?);
    services::wait_fabric_route(&addr, &host1, Duration::from_secs(30))?;
    println!(
        "  {addr} -> frontend (host1): the fabric's route, learned by the ToR's BIRD, is via {}",
        host1
    );
    let log = lab::serve_external(state, 7000)?;
    let fabric = crate::topology::fabric_ns();
    if !services::reaches(&fabric, &format!("{addr}:80")) {
        bail!("the outside cannot reach {addr}:80 (frontend accepts HTTP from anywhere)");
    }
    println!("  outside -> {addr}:80: answered by frontend");
    let seen = |vm: &str| -> Result<String> {
        let w = state
            .workloads
            .iter()
            .find(|w| w.name == vm)
            .context("VM")?;
        if !services::reaches(&w.ns, &format!("{}:7000", crate::topology::FABRIC_GW)) {
            bail!("{vm} cannot reach the outside");
        }
        services::last_seen_from(&log).context("the outside saw no connection")
    };
    let from = seen("frontend")?;
    println!("  frontend -> outside: the outside sees {from}");
    if from != addr {
        bail!("frontend's traffic left as {from}, not its floating IP {addr}");
    }
    say("the floating IP moves to database on host2: its route follows");
    openstack(&["floating", "ip", "set", "--port", "database-port", &id])?;
    services::wait_fabric_route(&addr, &host2, Duration::from_secs(30))?;
    let from = seen("database")?;
    println!("  {addr} -> database (host2): the fabric's route is via {}; database -> outside is seen as {from}", host2);
    if from != addr {
        bail!("database's traffic left as {from}, not the floating IP {addr}");
    }
    Ok(())
}

fn print_ports() -> Result<()> {
    let ports = openstack_json(&["port", "list", "--long"])?;
    let mut rows = vec![vec![
        "PORT".to_string(),
        "STATUS".to_string(),
        "FIXED IP".to_string(),
    ]];
    for p in ports.as_array().into_iter().flatten() {
        let ip = p["Fixed IP Addresses"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|f| f["ip_address"].as_str())
            .unwrap_or("")
            .to_string();
        rows.push(vec![
            p["Name"].as_str().unwrap_or("").to_string(),
            p["Status"].as_str().unwrap_or("").to_string(),
            ip,
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}
