//! calico-dhcp-agent with the real dnsmasq and a real DHCP client
//! (ISC dhclient) in namespaces this test creates: a host namespace runs
//! the agent over an embedded datastore the test writes as the Neutron
//! driver would; each VM is a namespace plugged into the host by a veth
//! named as Nova names taps.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calico_datastore::{Datastore, LocalStore};
use calico_openstack::keys::{subnet_key, workload_endpoint_key};
use calico_openstack::names::endpoint_name;
use calico_openstack::Region;
use calico_testsupport::netns::{Netns, Proc};
use serde_json::json;

const HOST: &str = "compute-1";
const NET: &str = "net1-0123456789";

fn can_run(test: &str) -> bool {
    calico_testsupport::require_root(test)
        && calico_testsupport::require_tools(
            test,
            &[
                ("dnsmasq", "dnsmasq-base"),
                ("dhclient", "isc-dhcp-client"),
                ("ip", "iproute2"),
            ],
        )
}

struct Lab {
    dir: tempfile::TempDir,
    host: Netns,
    vms: Vec<(Netns, Option<Proc>, Option<Proc>)>,
    agent: Option<Proc>,
    store: LocalStore,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "[DEFAULT]\nhost = {HOST}\ndhcp_confs = {d}/dhcp\ndhcp_renewal_time = 3\ndhcp_rebinding_time = 6\n\
             [calico]\ndatastore_type = local\nlocal_datastore_path = {d}/calico.db\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("neutron.conf"), conf).unwrap();
        std::fs::write(dir.path().join("mtu"), "1450\n").unwrap();
        std::fs::write(
            dir.path().join("dhclient.conf"),
            "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n\
             request subnet-mask, routers, domain-name, domain-name-servers, host-name, \
             interface-mtu, rfc3442-classless-static-routes, dhcp6.name-servers;\n",
        )
        .unwrap();
        let store = LocalStore::open(dir.path().join("calico.db")).unwrap();
        Lab {
            host: Netns::create("cdhcp", &format!("{tag}h")),
            dir,
            vms: vec![],
            agent: None,
            store,
        }
    }

    fn start_agent(&mut self) {
        let bin = env!("CARGO_BIN_EXE_calico-dhcp-agent");
        let conf = self.dir.path().join("neutron.conf");
        let mtu = self.dir.path().join("mtu");
        self.agent = Some(self.host.spawn(&[
            bin,
            "--config-file",
            conf.to_str().unwrap(),
            "--mtu-file",
            mtu.to_str().unwrap(),
        ]));
    }

    fn put(&self, key: &str, value: serde_json::Value) {
        self.store
            .put(key, value.to_string().as_bytes(), None)
            .unwrap();
    }

    fn subnet(&self, id: &str, value: serde_json::Value) {
        self.put(&subnet_key(&Region::none(), id), value);
    }

    /// A port of VM `n` (tap `tap<n>port…`, MAC fa:16:3e:00:00:0n).
    fn port(&self, n: usize, ips: &[&str]) {
        self.port_on(n, ips, NET);
    }

    /// A port of VM `n` on network `net`.
    fn port_on(&self, n: usize, ips: &[&str], net: &str) {
        let port_id = format!("{n}port-aaaa-bbbb");
        let name = endpoint_name(HOST, &format!("vm{n}"), &port_id);
        let nets: Vec<String> = ips
            .iter()
            .map(|ip| format!("{ip}/{}", if ip.contains(':') { 128 } else { 32 }))
            .collect();
        self.put(
            &workload_endpoint_key("openstack", &name),
            json!({
                "kind": "WorkloadEndpoint",
                "apiVersion": "projectcalico.org/v3",
                "metadata": {"name": name, "namespace": "openstack",
                             "annotations": {"openstack.projectcalico.org/network-id": net}},
                "spec": {"orchestrator": "openstack", "workload": format!("vm{n}"), "node": HOST,
                         "endpoint": port_id, "interfaceName": tap(n), "mac": mac(n),
                         "ipNetworks": nets, "allowedIps": []}
            }),
        );
    }

    /// The route calico-node would program for a VM's address.
    fn route(&self, n: usize, ip: &str) {
        self.host.ip(&["route", "replace", ip, "dev", &tap(n)]);
    }

    /// VM `n`: a namespace whose eth0 is the peer of the host's tap.
    fn vm(&mut self, n: usize) {
        let vm = Netns::create(
            "cdhcp",
            &format!("{}v{n}", &self.host.name[self.host.name.len() - 2..]),
        );
        self.host.ip(&[
            "link",
            "add",
            &tap(n),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &vm.name,
        ]);
        self.host.ip(&["link", "set", &tap(n), "up"]);
        vm.ip(&["link", "set", "eth0", "address", &mac(n)]);
        vm.ip(&["link", "set", "eth0", "up"]);
        self.vms.push((vm, None, None));
    }

    /// Starts dhclient (v4 or v6) in VM `n`, in the foreground.
    fn dhclient(&mut self, n: usize, v6: bool) {
        let d = self.dir.path();
        let fam = if v6 { "-6" } else { "-4" };
        let lf = d.join(format!("vm{n}{fam}.leases"));
        let pf = d.join(format!("vm{n}{fam}.pid"));
        let cf = d.join("dhclient.conf");
        // dhclient gives its script only its own variables: the log's path
        // is written into the script.
        let script = d.join(format!("vm{n}{fam}.sh"));
        let log = d.join(format!("vm{n}{fam}.log"));
        let text = format!(
            "#!/bin/sh\n{{ echo \"reason=$reason\"; env | grep -E '^new_' | sort; echo; }} >> {log}\n\
             case \"$reason\" in\n\
             BOUND|RENEW|REBIND|REBOOT) ip -4 addr flush dev $interface; \
             ip addr add $new_ip_address/$new_subnet_mask dev $interface; \
             ip route replace default via $new_routers dev $interface ;;\n\
             BOUND6|RENEW6|REBIND6) ip -6 addr add $new_ip6_address/$new_ip6_prefixlen dev $interface nodad ;;\n\
             esac\n",
            log = log.display()
        );
        std::fs::write(&script, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (vm, p4, p6) = &mut self.vms[n - 1];
        let args = [
            "dhclient",
            fam,
            "-d",
            "-cf",
            cf.to_str().unwrap(),
            "-sf",
            script.to_str().unwrap(),
            "-lf",
            lf.to_str().unwrap(),
            "-pf",
            pf.to_str().unwrap(),
            "eth0",
        ];
        let p = vm.spawn(&args);
        if v6 {
            *p6 = Some(p)
        } else {
            *p4 = Some(p)
        }
    }

    /// What dhclient told its script in VM `n`, one block per call.
    fn told(&self, n: usize, v6: bool) -> String {
        let fam = if v6 { "-6" } else { "-4" };
        std::fs::read_to_string(self.dir.path().join(format!("vm{n}{fam}.log"))).unwrap_or_default()
    }

    fn confdir(&self) -> PathBuf {
        self.dir.path().join("dhcp").join(NET)
    }

    fn dnsmasq_pid(&self) -> Option<u32> {
        self.dnsmasq_pid_of(NET)
    }

    fn dnsmasq_pid_of(&self, net: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("dhcp").join(net).join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, p4, p6) in &mut self.vms {
            p4.take();
            p6.take();
        }
        // Stopped by SIGTERM, the agent stops its dnsmasqs.
        if let Some(mut a) = self.agent.take() {
            a.terminate(Duration::from_secs(10));
        }
    }
}

fn tap(n: usize) -> String {
    format!("tap{n}port-aaaa")
}

fn mac(n: usize) -> String {
    format!("fa:16:3e:00:00:0{n}")
}

fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool, show: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}:\n{}", show());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn vms_get_address_gateway_mtu_and_dns_and_follow_changes() {
    if !can_run("vms_get_address_gateway_mtu_and_dns_and_follow_changes") {
        return;
    }
    let mut lab = Lab::new("a");
    lab.subnet(
        "sub4",
        json!({"network_id": NET, "cidr": "10.65.0.0/24", "gateway_ip": "10.65.0.1",
               "host_routes": [{"destination": "11.11.0.0/16", "nexthop": "10.65.0.1"}],
               "dns_servers": ["10.65.0.53", "10.65.0.54"]}),
    );
    // Bad data beside it: reported and skipped, the rest served.
    lab.put(
        &subnet_key(&Region::none(), "broken"),
        json!({"gateway_ip": "10.9.9.1"}),
    );
    lab.port(1, &["10.65.0.5"]);
    lab.vm(1);
    lab.route(1, "10.65.0.5");
    lab.start_agent();
    wait_for(
        10,
        "dnsmasq started",
        || lab.dnsmasq_pid().is_some(),
        || file(&lab.confdir().join("host")),
    );
    let dev = calico_dhcp::dnsmasq::device_name(NET);
    let addrs = lab.host.ip(&["-o", "addr", "show", "dev", &dev]);
    assert!(addrs.contains("10.65.0.1/24"), "gateway on {dev}: {addrs}");
    assert!(
        !lab.host.ip(&["route", "show"]).contains("10.65.0.0/24"),
        "no on-link subnet route"
    );

    lab.dhclient(1, false);
    wait_for(
        20,
        "a lease",
        || lab.told(1, false).contains("new_ip_address=10.65.0.5"),
        || lab.told(1, false),
    );
    let told = lab.told(1, false);
    for want in [
        "new_routers=10.65.0.1",
        "new_interface_mtu=1450",
        "new_domain_name_servers=10.65.0.53 10.65.0.54",
        "new_domain_name=openstacklocal",
        "new_host_name=host-10-65-0-5",
        "new_subnet_mask=255.255.255.0",
        "new_rfc3442_classless_static_routes=16 11 11 10 65 0 1 0 10 65 0 1",
    ] {
        assert!(told.contains(want), "{want} in:\n{told}");
    }

    // The address changes: served at the next renewal (T1 = 3 s): the
    // restarted dnsmasq refuses the old address and offers the new one.
    let pid = lab.dnsmasq_pid();
    lab.port(1, &["10.65.0.6"]);
    lab.route(1, "10.65.0.6");
    wait_for(
        30,
        "the new address at renewal",
        || lab.told(1, false).contains("new_ip_address=10.65.0.6"),
        || lab.told(1, false),
    );
    assert_ne!(lab.dnsmasq_pid(), pid, "restarted");

    // A second subnet on the network, and a VM on it.
    lab.subnet(
        "sub4b",
        json!({"network_id": NET, "cidr": "10.66.0.0/24", "gateway_ip": "10.66.0.1"}),
    );
    lab.port(2, &["10.66.0.7"]);
    lab.vm(2);
    lab.route(2, "10.66.0.7");
    wait_for(
        10,
        "second gateway",
        || {
            lab.host
                .ip(&["-o", "addr", "show", "dev", &dev])
                .contains("10.66.0.1/24")
        },
        String::new,
    );
    lab.dhclient(2, false);
    wait_for(
        20,
        "a lease on the second subnet",
        || lab.told(2, false).contains("new_ip_address=10.66.0.7"),
        || lab.told(2, false),
    );
    let told = lab.told(2, false);
    assert!(told.contains("new_routers=10.66.0.1"), "{told}");
    assert!(
        told.contains("new_rfc3442_classless_static_routes=24 10 65 0 0 0 0 0 0 10 66 0 1"),
        "the first subnet on link: {told}"
    );

    // dnsmasq dies: the agent starts it again.
    let pid = lab.dnsmasq_pid().unwrap();
    // SAFETY: a process of this test's agent, identified by its pid file.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_for(
        15,
        "dnsmasq started again",
        || lab.dnsmasq_pid().is_some_and(|p| p != pid),
        String::new,
    );

    // The port goes, then the network's last: dnsmasq, device and files go.
    lab.store
        .delete(
            &workload_endpoint_key("openstack", &endpoint_name(HOST, "vm1", "1port-aaaa-bbbb")),
            None,
        )
        .unwrap();
    lab.store
        .delete(
            &workload_endpoint_key("openstack", &endpoint_name(HOST, "vm2", "2port-aaaa-bbbb")),
            None,
        )
        .unwrap();
    wait_for(
        15,
        "network stopped",
        || !lab.confdir().exists(),
        String::new,
    );
    assert!(
        !lab.host.ip(&["link", "show"]).contains(&dev),
        "device removed"
    );
}

#[test]
fn dhcpv6_stateful_and_slaac_give_the_ports_addresses() {
    if !can_run("dhcpv6_stateful_and_slaac_give_the_ports_addresses") {
        return;
    }
    let mut lab = Lab::new("b");
    lab.subnet(
        "sub6",
        json!({"network_id": NET, "cidr": "fd00:65::/64", "gateway_ip": "fd00:65::1",
               "host_routes": [], "dns_servers": ["fd00:65::53"]}),
    );
    // And a SLAAC subnet (RA and address modes slaac): the address is the
    // EUI-64 one Neutron gives the port, from router advertisements.
    lab.subnet(
        "sub6slaac",
        json!({"network_id": NET, "cidr": "fd00:66::/64", "gateway_ip": "fd00:66::1",
               "host_routes": [], "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}),
    );
    lab.port(1, &["fd00:65::5", "fd00:66::f816:3eff:fe00:1"]);
    lab.vm(1);
    lab.host
        .ip(&["-6", "route", "replace", "fd00:65::5", "dev", &tap(1)]);
    lab.start_agent();
    wait_for(
        10,
        "dnsmasq started",
        || lab.dnsmasq_pid().is_some(),
        || file(&lab.confdir().join("host")),
    );
    // dhclient -6 needs the VM's link-local address past duplicate detection.
    let vm = &lab.vms[0].0;
    wait_for(
        10,
        "link-local address",
        || {
            let a = vm.ip(&["-6", "-o", "addr", "show", "dev", "eth0"]);
            a.contains("fe80") && !a.contains("tentative")
        },
        String::new,
    );
    lab.dhclient(1, true);
    wait_for(
        30,
        "a DHCPv6 lease",
        || lab.told(1, true).contains("new_ip6_address=fd00:65::5"),
        || {
            format!(
                "{}\nhost file:\n{}",
                lab.told(1, true),
                file(&lab.confdir().join("host"))
            )
        },
    );
    assert!(
        lab.told(1, true)
            .contains("new_dhcp6_name_servers=fd00:65::53"),
        "{}",
        lab.told(1, true)
    );
    let vm = &lab.vms[0].0;
    wait_for(
        30,
        "the SLAAC address from router advertisements",
        || {
            vm.ip(&["-6", "addr", "show", "dev", "eth0"])
                .contains("fd00:66::f816:3eff:fe00:1/64")
        },
        || vm.ip(&["-6", "addr", "show", "dev", "eth0"]),
    );
}

#[test]
fn two_networks_on_one_host_are_served_apart_and_left_alone() {
    if !can_run("two_networks_on_one_host_are_served_apart_and_left_alone") {
        return;
    }
    const NET2: &str = "net2-abcdef012345";
    let mut lab = Lab::new("c");
    lab.subnet(
        "sub4",
        json!({"network_id": NET, "cidr": "10.65.0.0/24", "gateway_ip": "10.65.0.1"}),
    );
    lab.subnet(
        "sub2",
        json!({"network_id": NET2, "cidr": "10.70.0.0/24", "gateway_ip": "10.70.0.1"}),
    );
    lab.port(1, &["10.65.0.5"]);
    lab.port_on(3, &["10.70.0.9"], NET2);
    for (n, ip) in [(1, "10.65.0.5"), (3, "10.70.0.9")] {
        lab.vm(n);
        lab.route(n, ip);
    }
    // vm(3) is the second VM namespace: its dhclient is the second.
    lab.start_agent();
    wait_for(
        10,
        "two dnsmasqs",
        || lab.dnsmasq_pid().is_some() && lab.dnsmasq_pid_of(NET2).is_some(),
        String::new,
    );
    lab.dhclient(1, false);
    lab.dhclient(2, false);
    wait_for(
        20,
        "net1's lease",
        || lab.told(1, false).contains("new_ip_address=10.65.0.5"),
        || lab.told(1, false),
    );
    wait_for(
        20,
        "net2's lease",
        || lab.told(2, false).contains("new_ip_address=10.70.0.9"),
        || lab.told(2, false),
    );
    assert!(
        lab.told(2, false).contains("new_routers=10.70.0.1"),
        "{}",
        lab.told(2, false)
    );

    // A port on net2 restarts net2's dnsmasq only; net1's VM keeps its
    // lease. Its unicast renewals (T1, 3 s) may reach net2's dnsmasq (both
    // listen on port 67 and the kernel picks one), which ignores them, as
    // with upstream's agent; its broadcast rebinding (T2, 6 s) reaches
    // every dnsmasq, and net1's answers.
    let (pid1, pid2) = (lab.dnsmasq_pid(), lab.dnsmasq_pid_of(NET2));
    lab.port_on(4, &["10.70.0.10"], NET2);
    wait_for(
        10,
        "net2 restarted",
        || lab.dnsmasq_pid_of(NET2).is_some_and(|p| Some(p) != pid2),
        String::new,
    );
    assert_eq!(lab.dnsmasq_pid(), pid1, "net1's dnsmasq left alone");
    let confirmed = |lab: &Lab| {
        let t = lab.told(1, false);
        t.matches("reason=RENEW").count() + t.matches("reason=REBIND").count()
    };
    let before = confirmed(&lab);
    wait_for(
        20,
        "net1's lease confirmed again",
        || confirmed(&lab) >= before + 2,
        || lab.told(1, false),
    );
    let told = lab.told(1, false);
    assert!(!told.contains("reason=EXPIRE"), "{told}");
    assert!(
        told.split("\n\n")
            .filter(|b| b.contains("new_ip_address"))
            .all(|b| b.contains("new_ip_address=10.65.0.5")),
        "{told}"
    );
}
