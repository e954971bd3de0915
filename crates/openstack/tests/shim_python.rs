//! The Python shim's own unit tests (`openstack/tests`), run with the
//! Python neutron-server runs: the parts of the shim that are logic rather
//! than calls into Neutron (the Keystone project cache).

use std::path::Path;
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";

/// Whether the shim's imports (oslo.log, keystoneauth1) are there: they come
/// with `setup.sh --openstack`.
fn shim_importable() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import oslo_log, keystoneauth1, keystoneclient"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn shim_unit_tests_pass() {
    if !shim_importable()
        && !calico_testsupport::skip(
            "shim_unit_tests_pass",
            "Neutron's Python libraries are not installed (bash scripts/setup.sh --openstack)",
        )
    {
        return;
    }
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openstack");
    let out = Command::new(PYTHON)
        .args(["-m", "unittest", "discover", "-v", "-s", "tests"])
        .current_dir(&shim)
        .env("PYTHONPATH", &shim)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    // Discovery that finds nothing also exits 0.
    assert!(report.contains("\nOK"), "{report}");
    assert!(!report.contains("Ran 0 tests"), "{report}");
}
