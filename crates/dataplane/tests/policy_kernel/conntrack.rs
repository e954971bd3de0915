//! OpenStack reuses addresses: an endpoint deleted and recreated with the
//! same address under a denying policy must not inherit the old endpoint's
//! established flows (policy only sees a flow's first packet).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use calico_api::decode::decode_documents;
use calico_api::AnyResource;
use calico_calc::input::Input;
use calico_dataplane::Manager;

use super::topology::{enter_netns, Topology, Workload};
use super::{prerequisites_met, workload_resource_with, Host};

fn profile(name: &str, rules: &str) -> AnyResource {
    let doc = format!(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: {name}\nspec:\n  ingress: {rules}\n  egress: {rules}\n"
    );
    let mut r = decode_documents(&doc).unwrap().pop().unwrap().resource;
    r.apply_defaults();
    r
}

/// A TCP connection from `from`'s namespace to `to`:80.
fn connect(from: &Workload, to: &Workload) -> TcpStream {
    let (ns, addr) = (from.netns.clone(), SocketAddr::new(to.addr(false), 80));
    std::thread::spawn(move || {
        enter_netns(&ns);
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect")
    })
    .join()
    .unwrap()
}

/// True if a byte sent on the connection comes back within a second.
fn echoes(s: &mut TcpStream, byte: u8) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 1];
    s.write_all(&[byte]).is_ok() && matches!(s.read(&mut buf), Ok(1)) && buf[0] == byte
}

#[test]
fn a_reused_address_does_not_inherit_established_flows() {
    let test = "a_reused_address_does_not_inherit_established_flows";
    if !prerequisites_met(test, &["ip", "nft", "conntrack"]) {
        return;
    }
    let topo = Topology::new(&format!("cct-{}", std::process::id()));
    let extra = [
        profile("open", "[{action: Allow}]"),
        profile("closed", "[]"),
    ];
    let mut host = Host::new(&topo, &extra);
    let (w1, w2) = (&topo.workloads[0], &topo.workloads[1]);
    let mut flow = connect(w1, w2);
    assert!(echoes(&mut flow, b'1'), "the allowed flow is established");

    // The VM is deleted and a new one (new port, new endpoint name) gets
    // its address, under a profile that admits nothing either way. (With
    // egress allowed, a retransmission from the new VM would legitimately
    // open the flow again from its side, under conntrack's loose pickup.)
    let old = workload_resource_with(w2, "open");
    let mut new = workload_resource_with(w2, "closed");
    new.metadata_mut().name = format!("{}-new", old.metadata().name);
    host.calc.on_input(Input::ResourceRemoved {
        kind: old.kind(),
        namespace: old.metadata().namespace.clone(),
        name: old.metadata().name.clone(),
    });
    host.calc.on_input(Input::Resource(new));
    for u in host.calc.flush() {
        host.nft.on_update(&u);
        host.conntrack.on_update(&u);
    }
    host.nft.apply().unwrap();
    // Control: the new policy alone does not stop the established flow.
    assert!(
        echoes(&mut flow, b'2'),
        "without the conntrack clean-up the old flow still passes (fast path)"
    );
    host.conntrack.apply().unwrap();
    assert!(
        !echoes(&mut flow, b'3'),
        "the old VM's flow passed after its address was reused"
    );
    let (ns, addr) = (w1.netns.clone(), SocketAddr::new(w2.addr(false), 80));
    let fresh = std::thread::spawn(move || {
        enter_netns(&ns);
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
    })
    .join()
    .unwrap();
    assert!(
        !fresh,
        "a new connection is denied by the new endpoint's profile"
    );
}
