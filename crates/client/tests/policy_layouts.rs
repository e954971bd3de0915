//! The client against a real (embedded) store: policies written at older
//! upstream layouts' keys are found, replaced at the current key and
//! listed once, whether a batch is small (one lookup per resource) or large
//! (one list per kind).

use std::sync::Arc;

use calico_api::decode::decode_documents;
use calico_api::{lookup_kind, AnyResource};
use calico_client::client::WriteMode;
use calico_client::Client;
use calico_datastore::local::LocalStore;
use calico_datastore::Datastore;

const NP: &str = "/calico/resources/v3/projectcalico.org/networkpolicies/prod";

fn policy(name: &str) -> AnyResource {
    let text = format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: prod\nspec:\n  selector: all()\n  types: [Ingress]\n"
    );
    decode_documents(&text).unwrap().remove(0).resource
}

/// A plain-name key as releases before v3.22 (and calico-rs before) wrote.
fn put_legacy(store: &dyn Datastore, name: &str) {
    let v = format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"NetworkPolicy","metadata":{{"name":"{name}","namespace":"prod","uid":"u-{name}"}},"spec":{{"tier":"default","selector":"all()"}}}}"#
    );
    store
        .create(&format!("{NP}/{name}"), v.as_bytes(), None)
        .unwrap();
}

fn keys(store: &dyn Datastore) -> Vec<String> {
    let mut k: Vec<String> = store
        .list(&format!("{NP}/"))
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    k.sort();
    k
}

fn check_moves(batch_size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Datastore> = Arc::new(LocalStore::open(dir.path().join("db")).unwrap());
    put_legacy(store.as_ref(), "p0");
    let client = Client::new(store.clone());
    let batch: Vec<AnyResource> = (0..batch_size).map(|i| policy(&format!("p{i}"))).collect();
    let written = client.write_all(batch, WriteMode::Apply).unwrap();
    assert!(!written[0].created, "p0 existed at its old key");
    let mut expected: Vec<String> = (0..batch_size)
        .map(|i| format!("{NP}/default.p{i}"))
        .collect();
    expected.sort();
    assert_eq!(keys(store.as_ref()), expected);
    // The uid of the policy at the old key survives the move.
    let info = lookup_kind("networkpolicy").unwrap();
    let p0 = client.get(info, "prod", "p0").unwrap().unwrap();
    assert_eq!(p0.metadata().uid, "u-p0");
    let listed = client.list(info, Some("prod")).unwrap();
    assert_eq!(listed.items.len(), batch_size);
    // Create refuses a name that exists at an old key.
    put_legacy(store.as_ref(), "old");
    let e = client.create(policy("old")).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}

#[test]
fn a_small_batch_moves_a_policy_off_its_old_key() {
    check_moves(2);
}

#[test]
fn a_large_batch_moves_a_policy_off_its_old_key() {
    check_moves(12);
}
