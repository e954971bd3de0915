//! One conformance suite, run against both backends: every test function
//! takes a `Fixture` and the `conformance!` macro instantiates it once in
//! `mod local` and once in `mod etcd` (each etcd test gets its own server, so
//! compaction or lease timing in one test cannot disturb another).
//!
//! Multi-process tests re-execute this test binary (`current_exe()`) with
//! `--exact --ignored child_process` and the role in `CALICO_DS_TEST_ROLE`;
//! `child_process` is ignored in a normal run, so it never counts as a test.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use calico_datastore::testing::EtcdServer;
use calico_datastore::{
    connect, Datastore, DatastoreConfig, Error, EtcdConfig, EtcdStore, LocalStore, Op, Revision,
    WatchEvent,
};

const ROLE_ENV: &str = "CALICO_DS_TEST_ROLE";
const CONFIG_ENV: &str = "CALICO_DS_TEST_CONFIG";
const KEY_ENV: &str = "CALICO_DS_TEST_KEY";
const COUNT_ENV: &str = "CALICO_DS_TEST_COUNT";
const START_ENV: &str = "CALICO_DS_TEST_START_AT_MS";

/// Generous bound for an event that should arrive promptly.
const EVENT_WAIT: Duration = Duration::from_secs(5);

struct Fixture {
    store: Box<dyn Datastore>,
    config: DatastoreConfig,
    etcd: Option<EtcdServer>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn local() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // A missing parent directory must be created by open().
        let path = dir.path().join("var/lib/calico/calico.db");
        let config = DatastoreConfig::Local { path };
        Fixture {
            store: connect(&config).unwrap(),
            config,
            etcd: None,
            _dir: Some(dir),
        }
    }

    fn etcd() -> Fixture {
        let etcd = EtcdServer::start();
        let config = etcd.datastore_config();
        Fixture {
            store: connect(&config).unwrap(),
            config,
            etcd: Some(etcd),
            _dir: None,
        }
    }

    fn reopen(&self) -> Box<dyn Datastore> {
        connect(&self.config).unwrap()
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $name() { super::$name(&super::Fixture::local()) } )*
        }
        mod etcd {
            $( #[test] fn $name() { super::$name(&super::Fixture::etcd()) } )*
        }
    };
}

conformance!(
    describe_names_backend,
    get_list_and_prefix_isolation,
    create_fails_if_present,
    update_cas_conflict,
    delete_cas_conflict,
    put_is_unconditional,
    txn_all_or_nothing,
    txn_shares_one_revision,
    txn_limits,
    revisions_monotonic,
    watch_replays_history_then_live,
    watch_from_now,
    watch_from_compacted_revision,
    lease_expiry_deletes_key_with_event,
    keep_alive_prevents_expiry,
    lease_errors,
    concurrent_processes_cas_counter,
    kill_9_writer_then_reopen,
);

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn next_event(w: &calico_datastore::Watch) -> WatchEvent {
    w.recv_timeout(EVENT_WAIT)
        .unwrap_or_else(|| panic!("no watch event within {EVENT_WAIT:?}"))
}

fn expect_put(ev: WatchEvent, key: &str, value: &str, rev: Revision) -> WatchEvent {
    match &ev {
        WatchEvent::Put { kv, .. } => {
            assert_eq!(
                (kv.key.as_str(), kv.value.as_slice(), kv.mod_revision),
                (key, value.as_bytes(), rev),
                "{ev:?}"
            );
        }
        other => panic!("expected Put({key}@{rev}), got {other:?}"),
    }
    ev
}

fn prev_value(ev: &WatchEvent) -> Option<String> {
    let prev = match ev {
        WatchEvent::Put { prev, .. } | WatchEvent::Delete { prev, .. } => prev,
        _ => return None,
    };
    prev.as_ref()
        .map(|p| String::from_utf8(p.value.clone()).unwrap())
}

// ---------------------------------------------------------------- basics

fn describe_names_backend(f: &Fixture) {
    let d = f.store.describe();
    match &f.config {
        DatastoreConfig::Local { path } => {
            assert_eq!(d, format!("local ({})", path.display()))
        }
        DatastoreConfig::Etcd(cfg) => assert_eq!(d, format!("etcdv3 ({})", cfg.endpoints[0])),
    }
}

fn get_list_and_prefix_isolation(f: &Fixture) {
    let s = &f.store;
    assert_eq!(s.get("/calico/a/1").unwrap(), None);
    let empty = s.list("/calico/").unwrap();
    assert!(empty.kvs.is_empty());
    assert!(empty.revision >= 1);

    let r1 = s.create("/calico/a/2", b"two", None).unwrap();
    let r2 = s.create("/calico/a/1", b"one", None).unwrap();
    s.create("/calico/ab/1", b"other", None).unwrap();
    s.create("/calico/a", b"parent", None).unwrap();
    let r_last = s.create("/calico/b/1", b"b", None).unwrap();
    assert!(r1 < r2 && r2 < r_last);

    let kv = s.get("/calico/a/1").unwrap().unwrap();
    assert_eq!(kv.value, b"one");
    assert_eq!(kv.value_str(), Some("one"));
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        (r2, r2, 1, 0)
    );

    let list = s.list("/calico/a/").unwrap();
    let keys: Vec<_> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/calico/a/1", "/calico/a/2"],
        "lexical order, prefix only"
    );
    assert_eq!(list.revision, r_last);
    assert_eq!(list.revision, s.current_revision().unwrap());

    let all = s.list("").unwrap();
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/calico/a",
            "/calico/a/1",
            "/calico/a/2",
            "/calico/ab/1",
            "/calico/b/1"
        ]
    );
    assert_eq!(s.list("/calico/a/1").unwrap().kvs.len(), 1);
    assert!(s.list("/nothing/").unwrap().kvs.is_empty());

    // Larger than one etcd list page (500), to exercise pagination.
    let ops: Vec<Op> = (0..120)
        .map(|i| Op::Put {
            key: format!("/calico/many/{i:04}"),
            value: vec![b'x'; 10],
            lease: None,
        })
        .collect();
    for chunk in ops.chunks(60) {
        s.txn(chunk).unwrap();
    }
    for i in 0..6 {
        let ops: Vec<Op> = (0..100)
            .map(|j| Op::Put {
                key: format!("/calico/many/z{i}/{j:03}"),
                value: vec![],
                lease: None,
            })
            .collect();
        s.txn(&ops).unwrap();
    }
    let many = s.list("/calico/many/").unwrap();
    assert_eq!(many.kvs.len(), 720);
    assert!(many.kvs.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(many.revision, s.current_revision().unwrap());
}

fn create_fails_if_present(f: &Fixture) {
    let s = &f.store;
    let rev = s.create("/k", b"1", None).unwrap();
    match s.create("/k", b"2", None) {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, "/k"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.get("/k").unwrap().unwrap().value, b"1");
    assert_eq!(
        s.current_revision().unwrap(),
        rev,
        "failed create writes nothing"
    );
}

fn update_cas_conflict(f: &Fixture) {
    let s = &f.store;
    let r1 = s.create("/k", b"1", None).unwrap();
    let r2 = s.update("/k", b"2", r1, None).unwrap();
    assert!(r2 > r1);
    let kv = s.get("/k").unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    assert_eq!(kv.value, b"2");

    match s.update("/k", b"3", r1, None) {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => assert_eq!((key.as_str(), expected, actual), ("/k", r1, r2)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    match s.update("/missing", b"3", r1, None) {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => assert_eq!((key.as_str(), expected, actual), ("/missing", r1, 0)),
        other => panic!("expected Conflict on a missing key, got {other:?}"),
    }
    // Revision 0 must never act as "create if missing".
    assert!(matches!(
        s.update("/missing", b"3", 0, None),
        Err(Error::Conflict { actual: 0, .. })
    ));
    assert_eq!(s.get("/missing").unwrap(), None);
    assert_eq!(s.get("/k").unwrap().unwrap().value, b"2");
    assert_eq!(s.current_revision().unwrap(), r2);
}

fn delete_cas_conflict(f: &Fixture) {
    let s = &f.store;
    let r1 = s.create("/k", b"1", None).unwrap();
    let r2 = s.update("/k", b"2", r1, None).unwrap();
    match s.delete("/k", Some(r1)) {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => assert_eq!((key.as_str(), expected, actual), ("/k", r1, r2)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let kv = s.delete("/k", Some(r2)).unwrap();
    assert_eq!(
        (kv.key.as_str(), kv.value.as_slice(), kv.mod_revision),
        ("/k", &b"2"[..], r2)
    );
    assert_eq!(s.get("/k").unwrap(), None);
    let after = s.current_revision().unwrap();
    assert!(after > r2, "a delete is a write");

    assert!(matches!(s.delete("/k", None), Err(Error::NotFound { key }) if key == "/k"));
    assert!(matches!(
        s.delete("/k", Some(r2)),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(s.current_revision().unwrap(), after);

    s.put("/u", b"x", None).unwrap();
    assert_eq!(s.delete("/u", None).unwrap().value, b"x");
    // Re-creating starts a new life: version 1, new create_revision.
    let r = s.create("/k", b"again", None).unwrap();
    let kv = s.get("/k").unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.version), (r, 1));
}

fn put_is_unconditional(f: &Fixture) {
    let s = &f.store;
    let r1 = s.put("/status", b"a", None).unwrap();
    let r2 = s.put("/status", b"b", None).unwrap();
    let kv = s.get("/status").unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    assert_eq!(kv.value, b"b");
    // Values are bytes, not text.
    s.put("/bin", &[0, 159, 146, 150, 255], None).unwrap();
    assert_eq!(
        s.get("/bin").unwrap().unwrap().value,
        [0, 159, 146, 150, 255]
    );
}

// ---------------------------------------------------------------- txn

fn txn_all_or_nothing(f: &Fixture) {
    let s = &f.store;
    let r1 = s.create("/t/existing", b"1", None).unwrap();
    let r2 = s.update("/t/existing", b"2", r1, None).unwrap();
    let before = s.current_revision().unwrap();

    let ops = vec![
        Op::Create {
            key: "/t/new1".into(),
            value: v("n1"),
            lease: None,
        },
        Op::Put {
            key: "/t/put".into(),
            value: v("p"),
            lease: None,
        },
        Op::Update {
            key: "/t/existing".into(),
            value: v("3"),
            mod_revision: r1, // stale
            lease: None,
        },
        Op::Create {
            key: "/t/new2".into(),
            value: v("n2"),
            lease: None,
        },
        Op::Delete {
            key: "/t/absent".into(),
            mod_revision: None,
        },
    ];
    match s.txn(&ops) {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => assert_eq!((key.as_str(), expected, actual), ("/t/existing", r1, r2)),
        other => panic!("expected Conflict naming /t/existing, got {other:?}"),
    }
    for k in ["/t/new1", "/t/put", "/t/new2"] {
        assert_eq!(s.get(k).unwrap(), None, "{k} must not be written");
    }
    assert_eq!(s.get("/t/existing").unwrap().unwrap().value, b"2");
    assert_eq!(s.current_revision().unwrap(), before);

    // The FIRST failing op is reported, whatever its kind.
    let ops2 = vec![
        Op::Delete {
            key: "/t/absent".into(),
            mod_revision: Some(5),
        },
        Op::Create {
            key: "/t/existing".into(),
            value: v("x"),
            lease: None,
        },
    ];
    assert!(matches!(s.txn(&ops2), Err(Error::NotFound { key }) if key == "/t/absent"));
    let ops3 = vec![ops2[1].clone(), ops2[0].clone()];
    assert!(matches!(s.txn(&ops3), Err(Error::AlreadyExists { key }) if key == "/t/existing"));

    // A txn may not name a key twice.
    let dup = vec![ops[0].clone(), ops[0].clone()];
    assert!(s.txn(&dup).is_err());
    assert_eq!(s.current_revision().unwrap(), before);

    // Empty txn: no write.
    assert_eq!(s.txn(&[]).unwrap(), before);
    assert_eq!(s.current_revision().unwrap(), before);
}

fn txn_shares_one_revision(f: &Fixture) {
    let s = &f.store;
    let r0 = s.create("/t/a", b"a0", None).unwrap();
    s.create("/t/gone", b"g", None).unwrap();
    let ops = vec![
        Op::Update {
            key: "/t/a".into(),
            value: v("a1"),
            mod_revision: r0,
            lease: None,
        },
        Op::Create {
            key: "/t/b".into(),
            value: v("b"),
            lease: None,
        },
        Op::Put {
            key: "/t/c".into(),
            value: v("c"),
            lease: None,
        },
        Op::Delete {
            key: "/t/gone".into(),
            mod_revision: None,
        },
    ];
    let before = s.current_revision().unwrap();
    let rev = s.txn(&ops).unwrap();
    assert_eq!(rev, before + 1, "one revision per transaction");
    assert_eq!(s.current_revision().unwrap(), rev);
    for k in ["/t/a", "/t/b", "/t/c"] {
        assert_eq!(s.get(k).unwrap().unwrap().mod_revision, rev, "{k}");
    }
    assert_eq!(s.get("/t/gone").unwrap(), None);
    let a = s.get("/t/a").unwrap().unwrap();
    assert_eq!((a.create_revision, a.version), (r0, 2));
    let b = s.get("/t/b").unwrap().unwrap();
    assert_eq!((b.create_revision, b.version), (rev, 1));

    // Watchers see the txn's events at one revision, in op order.
    let w = s.watch("/t/", rev).unwrap();
    let evs: Vec<_> = (0..4).map(|_| next_event(&w)).collect();
    let got: Vec<_> = evs
        .iter()
        .map(|e| (e.key().unwrap().to_string(), e.revision().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("/t/a", rev),
            ("/t/b", rev),
            ("/t/c", rev),
            ("/t/gone", rev)
        ]
        .map(|(k, r)| (k.to_string(), r))
    );
    assert!(matches!(evs[3], WatchEvent::Delete { .. }));
}

fn txn_limits(f: &Fixture) {
    let s = &f.store;
    let max = s.max_txn_ops();
    if f.etcd.is_some() {
        assert_eq!(max, 128);
    } else {
        assert!(max >= 1000);
    }
    // A full-size txn of conditional ops fits the server's limit.
    let n = max.min(300);
    let creates: Vec<Op> = (0..n)
        .map(|i| Op::Create {
            key: format!("/lim/{i:04}"),
            value: v("0"),
            lease: None,
        })
        .collect();
    let rev = s.txn(&creates).unwrap();
    let updates: Vec<Op> = (0..n)
        .map(|i| Op::Update {
            key: format!("/lim/{i:04}"),
            value: v("1"),
            mod_revision: rev,
            lease: None,
        })
        .collect();
    s.txn(&updates).unwrap();
    let deletes: Vec<Op> = (0..n)
        .map(|i| Op::Delete {
            key: format!("/lim/{i:04}"),
            mod_revision: Some(rev + 1),
        })
        .collect();
    s.txn(&deletes).unwrap();
    assert!(s.list("/lim/").unwrap().kvs.is_empty());

    let too_many: Vec<Op> = (0..=max)
        .map(|i| Op::Put {
            key: format!("/lim/{i:05}"),
            value: vec![],
            lease: None,
        })
        .collect();
    assert!(s.txn(&too_many).is_err());
    assert!(s.list("/lim/").unwrap().kvs.is_empty());
}

fn revisions_monotonic(f: &Fixture) {
    let s = &f.store;
    let mut last = s.current_revision().unwrap();
    for i in 0..20 {
        let rev = match i % 3 {
            0 => s.put("/m", format!("{i}").as_bytes(), None).unwrap(),
            1 => s.put(&format!("/m/{i}"), b"x", None).unwrap(),
            _ => {
                let kv = s.get("/m").unwrap().unwrap();
                s.update("/m", b"u", kv.mod_revision, None).unwrap()
            }
        };
        assert!(rev > last, "revision {rev} after {last}");
        assert_eq!(s.current_revision().unwrap(), rev);
        last = rev;
    }
    // Failed writes and reads do not move the revision.
    let _ = s.create("/m", b"dup", None);
    let _ = s.list("/");
    assert_eq!(s.current_revision().unwrap(), last);
}

// ---------------------------------------------------------------- watch

fn watch_replays_history_then_live(f: &Fixture) {
    let s = &f.store;
    let r1 = s.put("/w/a", b"a1", None).unwrap();
    let r2 = s.put("/w/b", b"b1", None).unwrap();
    s.put("/x/ignored", b"-", None).unwrap();
    let r3 = s.put("/w/a", b"a2", None).unwrap();
    assert_eq!(s.delete("/w/b", None).unwrap().value, b"b1");
    let r4 = s.current_revision().unwrap();

    let w = s.watch("/w/", r1).unwrap();
    let e = expect_put(next_event(&w), "/w/a", "a1", r1);
    match &e {
        WatchEvent::Put { kv, prev } => {
            assert_eq!((kv.create_revision, kv.version), (r1, 1), "create event");
            assert!(prev.is_none());
        }
        _ => unreachable!(),
    }
    expect_put(next_event(&w), "/w/b", "b1", r2);
    let e = expect_put(next_event(&w), "/w/a", "a2", r3);
    assert_eq!(prev_value(&e).as_deref(), Some("a1"));
    if let WatchEvent::Put { kv, prev } = &e {
        assert_eq!((kv.create_revision, kv.version), (r1, 2));
        assert_eq!(prev.as_ref().unwrap().mod_revision, r1);
    }
    match next_event(&w) {
        ev @ WatchEvent::Delete { .. } => {
            assert_eq!(ev.key(), Some("/w/b"));
            assert_eq!(ev.revision(), Some(r4));
            assert_eq!(prev_value(&ev).as_deref(), Some("b1"));
        }
        other => panic!("expected Delete, got {other:?}"),
    }
    assert!(w.recv_timeout(Duration::from_millis(150)).is_none());
    assert!(!w.is_closed());

    // Live events, in order, other prefixes filtered out.
    s.put("/x/other", b"-", None).unwrap();
    let r5 = s.put("/w/c", b"c1", None).unwrap();
    let r6 = s.put("/w/a", b"a3", None).unwrap();
    expect_put(next_event(&w), "/w/c", "c1", r5);
    let e = expect_put(next_event(&w), "/w/a", "a3", r6);
    assert_eq!(prev_value(&e).as_deref(), Some("a2"));

    // Starting mid-history skips what came before.
    let w2 = s.watch("/w/a", r3).unwrap();
    expect_put(next_event(&w2), "/w/a", "a2", r3);
    expect_put(next_event(&w2), "/w/a", "a3", r6);

    // Iterator view, from another handle (another connection/client).
    let other = f.reopen();
    let mut w3 = other.watch("/w/c", r5).unwrap();
    let first = w3.next().unwrap();
    assert_eq!(first.revision(), Some(r5));
    drop(w3); // cancels
}

fn watch_from_now(f: &Fixture) {
    let s = &f.store;
    s.put("/n/old", b"1", None).unwrap();
    let w = s.watch("/n/", 0).unwrap();
    // Written right after watch() returned: must not be missed.
    let r = s.put("/n/new", b"2", None).unwrap();
    expect_put(next_event(&w), "/n/new", "2", r);
    assert!(w.recv_timeout(Duration::from_millis(100)).is_none());

    // A writer in another handle is seen too.
    let other = f.reopen();
    let r2 = other.put("/n/from-other", b"3", None).unwrap();
    expect_put(next_event(&w), "/n/from-other", "3", r2);
    // Watch from list().revision + 1 resumes exactly after the snapshot.
    let snap = s.list("/n/").unwrap();
    let w2 = s.watch("/n/", snap.revision + 1).unwrap();
    let r3 = s.put("/n/after", b"4", None).unwrap();
    expect_put(next_event(&w2), "/n/after", "4", r3);
}

fn watch_from_compacted_revision(f: &Fixture) {
    let s = &f.store;
    let r1 = s.put("/c/k", b"1", None).unwrap();
    let r2 = s.put("/c/k", b"2", None).unwrap();
    let r3 = s.put("/c/k", b"3", None).unwrap();
    s.compact(r3).unwrap();

    let w = s.watch("/c/", r1).unwrap();
    match next_event(&w) {
        WatchEvent::Compacted { compact_revision } => assert_eq!(compact_revision, r3),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // The watch ends after Compacted.
    assert!(w.recv_timeout(Duration::from_secs(2)).is_none());
    assert!(w.is_closed());

    // From the compaction revision on, history is still there.
    let w = s.watch("/c/", r3).unwrap();
    expect_put(next_event(&w), "/c/k", "3", r3);

    match s.compact(r2) {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (r2, r3)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(s.compact(r3 + 100).is_err(), "future revision");
    // Current data is untouched.
    assert_eq!(s.get("/c/k").unwrap().unwrap().value, b"3");
    assert_eq!(s.list("/c/").unwrap().kvs.len(), 1);
}

// ---------------------------------------------------------------- leases

fn lease_expiry_deletes_key_with_event(f: &Fixture) {
    let s = &f.store;
    let lease = s.grant_lease(Duration::from_secs(1)).unwrap();
    assert_ne!(lease, 0);
    s.put("/l/plain", b"p", None).unwrap();
    let r = s.create("/l/key", b"v", Some(lease)).unwrap();
    assert_eq!(s.get("/l/key").unwrap().unwrap().lease, lease);
    let w = s.watch("/l/", r + 1).unwrap();

    let start = Instant::now();
    let ev = w
        .recv_timeout(Duration::from_secs(10))
        .expect("lease expiry within 10 s");
    match &ev {
        WatchEvent::Delete {
            key,
            mod_revision,
            prev,
        } => {
            assert_eq!(key, "/l/key");
            assert!(*mod_revision > r);
            assert_eq!(prev.as_ref().unwrap().value, b"v");
        }
        other => panic!("expected Delete from lease expiry, got {other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert_eq!(s.get("/l/key").unwrap(), None);
    assert!(
        s.get("/l/plain").unwrap().is_some(),
        "keys without the lease stay"
    );
    assert!(matches!(s.keep_alive(lease), Err(Error::NotFound { .. })));
}

fn keep_alive_prevents_expiry(f: &Fixture) {
    let s = &f.store;
    // 2 s TTL, renewed every 250 ms: margin for a loaded CI machine.
    let lease = s.grant_lease(Duration::from_secs(2)).unwrap();
    s.put("/ka/a", b"a", Some(lease)).unwrap();
    s.put("/ka/b", b"b", Some(lease)).unwrap();
    let until = Instant::now() + Duration::from_millis(4500);
    while Instant::now() < until {
        s.keep_alive(lease).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            s.get("/ka/a").unwrap().is_some(),
            "expired despite keep-alive"
        );
    }
    assert_eq!(s.list("/ka/").unwrap().kvs.len(), 2);

    // Revoking deletes every attached key at one revision.
    let w = s.watch("/ka/", 0).unwrap();
    s.revoke_lease(lease).unwrap();
    let e1 = next_event(&w);
    let e2 = next_event(&w);
    assert!(matches!(e1, WatchEvent::Delete { .. }) && matches!(e2, WatchEvent::Delete { .. }));
    assert_eq!(e1.revision(), e2.revision());
    assert!(s.list("/ka/").unwrap().kvs.is_empty());
    assert!(matches!(s.keep_alive(lease), Err(Error::NotFound { .. })));
    assert!(matches!(s.revoke_lease(lease), Err(Error::NotFound { .. })));
}

fn lease_errors(f: &Fixture) {
    let s = &f.store;
    let before = s.current_revision().unwrap();
    match s.create("/le/k", b"v", Some(0x7fff_0000_1234)) {
        Err(Error::NotFound { key }) => assert!(key.starts_with("lease"), "{key}"),
        other => panic!("expected NotFound for a missing lease, got {other:?}"),
    }
    assert_eq!(s.current_revision().unwrap(), before);
    assert!(matches!(
        s.keep_alive(0x7fff_0000_1234),
        Err(Error::NotFound { .. })
    ));
    // Re-putting without a lease detaches the key from it.
    let lease = s.grant_lease(Duration::from_secs(30)).unwrap();
    s.put("/le/k", b"v", Some(lease)).unwrap();
    s.put("/le/k", b"v2", None).unwrap();
    s.revoke_lease(lease).unwrap();
    assert_eq!(s.get("/le/k").unwrap().unwrap().lease, 0);
}

// ---------------------------------------------------------------- processes

fn encode_config(cfg: &DatastoreConfig) -> String {
    match cfg {
        DatastoreConfig::Local { path } => format!("local:{}", path.display()),
        DatastoreConfig::Etcd(e) => format!("etcd:{}", e.endpoints.join(",")),
    }
}

fn decode_config(s: &str) -> DatastoreConfig {
    match s.split_once(':') {
        Some(("local", path)) => DatastoreConfig::Local {
            path: PathBuf::from(path),
        },
        Some(("etcd", eps)) => DatastoreConfig::Etcd(EtcdConfig {
            timeout: Duration::from_secs(5),
            ..EtcdConfig::new(eps.split(','))
        }),
        _ => panic!("bad {CONFIG_ENV}: {s}"),
    }
}

/// Text after `tag` in a child's output line. Not necessarily at the start:
/// libtest prints `test child_process ... ` on the line of the first output.
fn marker<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    line.find(tag).map(|i| &line[i + tag.len()..])
}

/// Kills the child (by its handle, i.e. its PID) if the test bails out.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run this test binary as a child in `role`; a counter child waits until
/// `start_at_ms` (unix ms) so that several children start together.
fn spawn_child(
    role: &str,
    cfg: &DatastoreConfig,
    key: &str,
    count: usize,
    start_at_ms: u128,
) -> ChildGuard {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "--exact",
            "--ignored",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        .env(CONFIG_ENV, encode_config(cfg))
        .env(KEY_ENV, key)
        .env(COUNT_ENV, count.to_string())
        .env(START_ENV, start_at_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

/// Entry point of the child processes, not a test: ignored so that a normal
/// run does not count it as passing; the parent runs it with `--ignored`.
#[test]
#[ignore = "helper entry point for child processes"]
fn child_process() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let store = connect(&decode_config(&std::env::var(CONFIG_ENV).unwrap())).unwrap();
    let key = std::env::var(KEY_ENV).unwrap();
    let count: usize = std::env::var(COUNT_ENV).unwrap().parse().unwrap();
    let mut out = std::io::stdout().lock();
    match role.as_str() {
        // `count` CAS increments of the counter at `key`, retrying conflicts.
        "counter" => {
            // Start together so that the processes really contend.
            if let Ok(at) = std::env::var(START_ENV) {
                let at = std::time::UNIX_EPOCH + Duration::from_millis(at.parse().unwrap());
                if let Ok(wait) = at.duration_since(std::time::SystemTime::now()) {
                    std::thread::sleep(wait);
                }
            }
            let mut retries = 0;
            for _ in 0..count {
                loop {
                    let kv = store.get(&key).unwrap().expect("counter exists");
                    let n: u64 = kv.value_str().unwrap().parse().unwrap();
                    match store.update(&key, (n + 1).to_string().as_bytes(), kv.mod_revision, None)
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => retries += 1,
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            }
            writeln!(out, "DONE retries={retries}").unwrap();
        }
        // Write keys as fast as possible, acknowledging each one after the
        // store returned; the parent kills us with SIGKILL mid-stream.
        "writer" => {
            for i in 0.. {
                let k = format!("{key}{i:06}");
                if i % 2 == 0 {
                    store
                        .create(&k, format!("value {i}").as_bytes(), None)
                        .unwrap();
                } else {
                    // Multi-op txns must be atomic across the kill as well.
                    store
                        .txn(&[
                            Op::Create {
                                key: k.clone(),
                                value: format!("value {i}").into_bytes(),
                                lease: None,
                            },
                            Op::Put {
                                key: format!("{key}last"),
                                value: i.to_string().into_bytes(),
                                lease: None,
                            },
                        ])
                        .unwrap();
                }
                writeln!(out, "ACK {k}").unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn concurrent_processes_cas_counter(f: &Fixture) {
    const PROCS: usize = 4;
    const INCREMENTS: usize = 200;
    f.store.create("/counter", b"0", None).unwrap();
    let start = Instant::now();
    let start_at = (std::time::SystemTime::now() + Duration::from_millis(500))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut children: Vec<ChildGuard> = (0..PROCS)
        .map(|_| spawn_child("counter", &f.config, "/counter", INCREMENTS, start_at))
        .collect();
    let mut retries = Vec::new();
    for c in &mut children {
        let status = c.0.wait().unwrap();
        assert!(status.success(), "counter child failed: {status}");
        let mut out = String::new();
        std::io::Read::read_to_string(c.0.stdout.as_mut().unwrap(), &mut out).unwrap();
        retries.extend(
            out.lines()
                .filter_map(|l| marker(l, "DONE "))
                .map(str::to_string),
        );
    }
    assert_eq!(retries.len(), PROCS, "every child reports DONE");
    let kv = f.store.get("/counter").unwrap().unwrap();
    assert_eq!(
        kv.value_str(),
        Some((PROCS * INCREMENTS).to_string().as_str())
    );
    assert_eq!(kv.version as usize, PROCS * INCREMENTS + 1);
    eprintln!(
        "{}: {PROCS}x{INCREMENTS} CAS increments in {:?} ({})",
        f.store.describe(),
        start.elapsed(),
        retries.join(", ")
    );
}

fn kill_9_writer_then_reopen(f: &Fixture) {
    let mut child = spawn_child("writer", &f.config, "/kill/", 0, 0);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(k) = marker(&line, "ACK ") {
                if tx.send(k.to_string()).is_err() {
                    break;
                }
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 150 {
        acked.push(
            rx.recv_timeout(Duration::from_secs(20))
                .expect("writer child stopped acknowledging"),
        );
    }
    // SIGKILL mid-stream (Child::kill), then collect every ACK it got out.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    reader.join().unwrap();
    acked.extend(rx.try_iter());

    if let DatastoreConfig::Local { path } = &f.config {
        let reopened = LocalStore::open(path).unwrap();
        reopened.check_integrity().unwrap();
    }
    let store = f.reopen();
    for k in &acked {
        assert!(store.get(k).unwrap().is_some(), "acknowledged {k} lost");
    }
    let all = store.list("/kill/").unwrap();
    // No half-applied txn: every odd key has its "last" marker at or after it.
    let last: usize = store
        .get("/kill/last")
        .unwrap()
        .unwrap()
        .value_str()
        .unwrap()
        .parse()
        .unwrap();
    let written = all.kvs.len() - 1; // minus the marker
    assert!(written >= acked.len());
    assert!(last + 2 >= written, "marker {last} vs {written} keys");
    // The store is writable after the crash.
    store.create("/kill/after", b"ok", None).unwrap();
}

// ---------------------------------------------------------------- etcd reachability

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn etcd_unreachable_endpoint_is_one_clear_error() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let cfg = EtcdConfig {
        timeout: Duration::from_secs(3),
        ..EtcdConfig::new([endpoint.clone()])
    };
    let start = Instant::now();
    let err = EtcdStore::connect(&cfg).err().expect("connect must fail");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    match &err {
        Error::Unavailable { endpoint: e, cause } => {
            assert_eq!(e, &endpoint);
            assert_eq!(cause, "connection refused");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("cannot reach etcd at {endpoint}: connection refused")
    );
    // Through the generic entry point too.
    assert!(matches!(
        connect(&DatastoreConfig::Etcd(cfg)),
        Err(Error::Unavailable { .. })
    ));
}

#[test]
fn etcd_silent_endpoint_times_out() {
    // Accepts TCP (kernel backlog) but never speaks gRPC.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let cfg = EtcdConfig {
        timeout: Duration::from_secs(1),
        ..EtcdConfig::new([endpoint.clone()])
    };
    let start = Instant::now();
    let err = EtcdStore::connect(&cfg).err().expect("connect must fail");
    let took = start.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    eprintln!("silent endpoint: {err}");
    match &err {
        Error::Unavailable { endpoint: e, .. } => assert_eq!(e, &endpoint),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(err.to_string().lines().count(), 1, "{err}");
    drop(listener);
}

#[test]
fn etcd_server_lost_after_connect() {
    let mut etcd = EtcdServer::start();
    let cfg = EtcdConfig {
        timeout: Duration::from_secs(2),
        ..etcd.config()
    };
    let store = EtcdStore::connect(&cfg).unwrap();
    store.put("/x", b"1", None).unwrap();
    let w = store.watch("/", 0).unwrap();
    let endpoint = etcd.endpoint();
    etcd.kill();

    let start = Instant::now();
    match store.get("/x") {
        Err(Error::Unavailable { endpoint: e, cause }) => {
            assert_eq!(e, endpoint);
            assert_eq!(cause, "connection refused");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    match w.recv_timeout(Duration::from_secs(10)) {
        Some(WatchEvent::Error(_)) => {}
        other => panic!("expected a watch Error event, got {other:?}"),
    }
    assert!(w.recv_timeout(Duration::from_secs(1)).is_none());
    assert!(w.is_closed());
}

// ---------------------------------------------------------------- local only

#[test]
fn local_reopen_keeps_data_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calico.db");
    let rev = {
        let s = LocalStore::open(&path).unwrap();
        assert_eq!(
            s.current_revision().unwrap(),
            1,
            "fresh store is at revision 1"
        );
        s.put("/a", b"1", None).unwrap()
    };
    let s = LocalStore::open(&path).unwrap();
    assert_eq!(s.current_revision().unwrap(), rev);
    assert_eq!(s.get("/a").unwrap().unwrap().mod_revision, rev);
    s.check_integrity().unwrap();
}

#[test]
fn local_rejects_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calico.db");
    drop(LocalStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    match LocalStore::open(&path) {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("schema version 99"), "{msg}"),
        other => panic!("expected InvalidConfig, got {:?}", other.err()),
    }
}

#[test]
fn local_unusable_path_is_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a dir").unwrap();
    assert!(matches!(
        LocalStore::open(file.join("calico.db")),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn local_watch_drop_stops_poller() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(dir.path().join("calico.db")).unwrap();
    for _ in 0..20 {
        let w = s.watch("/", 0).unwrap();
        drop(w);
    }
    // Still fully usable, and a new watch works.
    let w = s.watch("/", 0).unwrap();
    let r = s.put("/k", b"v", None).unwrap();
    assert_eq!(next_event(&w).revision(), Some(r));
}

// ---------------------------------------------------------------- etcd TLS and auth

#[test]
fn etcd_tls_from_files_and_inline_pem() {
    let dir = tempfile::tempdir().unwrap();
    let pki = calico_datastore::testing::TestPki::generate(dir.path()).unwrap();
    let etcd = EtcdServer::start_tls(&pki);
    assert!(etcd.endpoint().starts_with("https://"));

    // Files.
    let store = EtcdStore::connect(&etcd.config()).unwrap();
    let rev = store.put("/tls/k", b"v", None).unwrap();
    let w = store.watch("/tls/", rev).unwrap();
    expect_put(next_event(&w), "/tls/k", "v", rev);

    // Inline PEM (CalicoAPIConfig etcdCACert/etcdCert/etcdKey), and an
    // endpoint without scheme: TLS material implies https.
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap();
    let inline = EtcdConfig {
        endpoints: vec![etcd.endpoint().trim_start_matches("https://").to_string()],
        ca_cert_pem: Some(read(&pki.ca_cert)),
        cert_pem: Some(read(&pki.client_cert)),
        key_pem: Some(read(&pki.client_key)),
        timeout: Duration::from_secs(5),
        ..EtcdConfig::default()
    };
    let store2 = EtcdStore::connect(&inline).unwrap();
    assert_eq!(store2.get("/tls/k").unwrap().unwrap().value, b"v");
    assert!(store2.describe().contains("https://127.0.0.1:"));

    // Without a client certificate the server refuses us: one-line error.
    let no_client_cert = EtcdConfig {
        cert_pem: None,
        key_pem: None,
        timeout: Duration::from_secs(2),
        ..inline.clone()
    };
    let start = Instant::now();
    let err = EtcdStore::connect(&no_client_cert)
        .err()
        .expect("must fail without a client certificate");
    assert!(start.elapsed() < Duration::from_secs(4));
    eprintln!("without client certificate: {err}");
    assert_eq!(err.to_string().lines().count(), 1, "{err}");

    // Certificate without key is a configuration error.
    let half = EtcdConfig {
        key_pem: None,
        ..inline.clone()
    };
    assert!(matches!(
        EtcdStore::connect(&half),
        Err(Error::InvalidConfig(_))
    ));
    // Unreadable CA file names the file.
    let missing = EtcdConfig {
        ca_cert_pem: None,
        ca_cert_file: Some(dir.path().join("nope.crt")),
        ..inline
    };
    match EtcdStore::connect(&missing) {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("nope.crt"), "{msg}"),
        other => panic!("expected InvalidConfig, got {:?}", other.err()),
    }
}

fn etcdctl(endpoint: &str, args: &[&str]) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("etcdctl (apt-get install etcd-client)");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn etcd_username_password_auth() {
    let etcd = EtcdServer::start();
    let ep = etcd.endpoint();
    etcdctl(&ep, &["user", "add", "root:s3cret"]);
    etcdctl(&ep, &["user", "grant-role", "root", "root"]);
    etcdctl(&ep, &["auth", "enable"]);

    let good = EtcdConfig {
        username: Some("root".into()),
        password: Some("s3cret".into()),
        ..etcd.config()
    };
    let store = EtcdStore::connect(&good).unwrap();
    let rev = store.create("/auth/k", b"v", None).unwrap();
    assert_eq!(store.get("/auth/k").unwrap().unwrap().mod_revision, rev);
    let w = store.watch("/auth/", rev).unwrap();
    expect_put(next_event(&w), "/auth/k", "v", rev);
    let lease = store.grant_lease(Duration::from_secs(5)).unwrap();
    store.keep_alive(lease).unwrap();
    store.revoke_lease(lease).unwrap();

    let bad = EtcdConfig {
        password: Some("wrong".into()),
        ..good.clone()
    };
    match EtcdStore::connect(&bad) {
        Err(Error::InvalidConfig(msg)) => {
            assert!(msg.contains("rejected the credentials"), "{msg}")
        }
        other => panic!("expected InvalidConfig, got {:?}", other.err()),
    }

    // No credentials: reads are refused with a configuration error.
    let anonymous = etcd.config();
    let result = EtcdStore::connect(&anonymous).and_then(|s| s.get("/auth/k"));
    match result {
        Err(Error::InvalidConfig(msg)) => {
            eprintln!("anonymous: {msg}");
            assert!(msg.contains("username"), "{msg}")
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn etcd_usable_from_inside_an_async_runtime() {
    // Callers are synchronous, but one may still call us from a tokio
    // worker; that must not panic with "cannot start a runtime from within
    // a runtime".
    let etcd = EtcdServer::start();
    let store = etcd.connect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rev = rt.block_on(async { store.put("/async", b"1", None).unwrap() });
    assert_eq!(store.get("/async").unwrap().unwrap().mod_revision, rev);
    let w = rt.block_on(async { store.watch("/async", rev).unwrap() });
    expect_put(next_event(&w), "/async", "1", rev);
    // Dropping the store inside a runtime is fine too.
    rt.block_on(async move { drop(store) });
}
