//! `local` backend: one SQLite file shared by every process on the host
//! (calicoctl, the agent, the OpenStack driver, lab hosts), with etcd's model.
//!
//! Why SQLite this way:
//! - WAL mode: readers (watch pollers, `get`/`list`) never block the writer and
//!   vice versa, across processes.
//! - `synchronous=FULL`: a write that returned is on disk (fsync of the WAL on
//!   every commit), so `kill -9` or a crash loses nothing acknowledged.
//! - `BEGIN IMMEDIATE` for every write: the write lock is taken up front, so a
//!   transaction never has to upgrade a read lock (which would fail with
//!   SQLITE_BUSY_SNAPSHOT instead of waiting), and the condition checks and
//!   the writes see the same state. `busy_timeout` makes contending writers
//!   in other processes wait instead of failing.
//!
//! Data model (schema version [`SCHEMA_VERSION`], in `PRAGMA user_version`):
//! - `meta`: the global `revision` (bumped once per write transaction),
//!   `compact_revision` and the `next_lease` id counter.
//! - `kv`: current value of each key with create/mod revision, version, lease.
//!   Keys are BLOBs so that ordering and prefix ranges are plain byte
//!   comparisons, exactly as in etcd.
//! - `event`: the change log watchers read, one row per key change, carrying
//!   the previous value inline so `prev` survives compaction of older rows.
//! - `lease`: TTL and wall-clock deadline (wall clock because several
//!   processes share it). Expired leases are reaped by any write, by any read
//!   that notices one is due, and by watch pollers: their keys are deleted
//!   with delete events, one revision per lease (as etcd's lessor does).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::{
    check_txn_shape, lease_not_found, prefix_range_end, Datastore, Error, KeyValue, LeaseId,
    ListResult, Op, Result, Revision, Watch, WatchEvent,
};

/// How often a watcher looks for commits made by OTHER processes (commits by
/// this process wake its watchers at once). The check is `PRAGMA
/// data_version`, a read of the WAL index in shared memory costing a few
/// microseconds, so 100 checks a second per watcher is negligible CPU while
/// keeping cross-process propagation (agent reacting to a calicoctl write)
/// well under human-noticeable latency. The same tick bounds how late an
/// expired lease is noticed when nobody writes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Schema version stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a writer waits for another process's write lock. Writes hold it
/// for milliseconds; a generous bound only matters when the disk stalls, and
/// failing fast would just turn into caller retries.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Retry step while waiting for the lock. SQLite's own busy_timeout handler
/// backs off to 100 ms sleeps, so a process that just committed re-takes the
/// lock long before the sleepers wake: writers in other processes starve
/// for whole batches. Short, constant steps keep waiting writers in the
/// race; each retry is one shared-memory lock attempt, so it costs nothing.
const BUSY_STEP: Duration = Duration::from_millis(1);

thread_local! {
    /// When the current lock wait on this thread began (see `busy_wait`).
    static BUSY_SINCE: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// SQLite busy handler: `attempt` is 0 on the first call for a lock wait.
fn busy_wait(attempt: i32) -> bool {
    let now = std::time::Instant::now();
    let since = BUSY_SINCE.with(|s| {
        if attempt == 0 || s.get().is_none() {
            s.set(Some(now));
        }
        s.get().unwrap_or(now)
    });
    if now.duration_since(since) >= BUSY_TIMEOUT {
        return false; // SQLITE_BUSY: "database is locked"
    }
    thread::sleep(BUSY_STEP);
    true
}

/// No server-side limit exists here; this only bounds one SQLite transaction.
const MAX_TXN_OPS: usize = 10_000;

/// Automatic compaction keeps the event log from growing without bound on a
/// long-running host (nothing compacts a local store otherwise). Every
/// `AUTO_COMPACT_EVERY` revisions, history older than `AUTO_COMPACT_RETAIN`
/// revisions is dropped; watchers that far behind get `Compacted` (resync),
/// as they would from an etcd with auto-compaction.
const AUTO_COMPACT_EVERY: Revision = 1_000;
const AUTO_COMPACT_RETAIN: Revision = 100_000;

const META_REVISION: &str = "revision";
const META_COMPACT: &str = "compact_revision";
const META_NEXT_LEASE: &str = "next_lease";

const SCHEMA: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('revision', 1), ('compact_revision', 0), ('next_lease', 1);

CREATE TABLE kv (
    key             BLOB PRIMARY KEY,
    value           BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    lease           INTEGER NOT NULL
);
CREATE INDEX kv_by_lease ON kv (lease) WHERE lease <> 0;

CREATE TABLE event (
    revision             INTEGER NOT NULL,
    seq                  INTEGER NOT NULL,
    key                  BLOB NOT NULL,
    deleted              INTEGER NOT NULL,
    value                BLOB,
    create_revision      INTEGER,
    version              INTEGER,
    lease                INTEGER,
    prev_value           BLOB,
    prev_create_revision INTEGER,
    prev_mod_revision    INTEGER,
    prev_version         INTEGER,
    prev_lease           INTEGER
);
CREATE UNIQUE INDEX event_by_revision ON event (revision, seq);

CREATE TABLE lease (
    id          INTEGER PRIMARY KEY,
    ttl_ms      INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL
);
CREATE INDEX lease_by_deadline ON lease (deadline_ms);
";

const KV_COLUMNS: &str = "key, value, create_revision, mod_revision, version, lease";
const EVENT_COLUMNS: &str = "revision, key, deleted, value, create_revision, version, lease, \
     prev_value, prev_create_revision, prev_mod_revision, prev_version, prev_lease";

fn sql_err(e: rusqlite::Error) -> Error {
    Error::Backend(format!("local store: {e}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn key_string(bytes: Vec<u8>) -> String {
    // Keys are only ever written from &str, so this is always valid UTF-8.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Wakes this process's watch pollers right after a local commit, so that
/// in-process watchers do not wait for the next poll tick.
struct Notifier {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl Notifier {
    fn bump(&self) {
        *self.seq.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.cv.notify_all();
    }

    fn current(&self) -> u64 {
        *self.seq.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until the sequence moves past `seen` or `timeout` passes.
    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |s| *s == seen)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

pub struct LocalStore {
    path: PathBuf,
    /// rusqlite connections are not Sync; one connection per handle, shared
    /// by the handle's threads. Watchers get their own connections.
    conn: Mutex<Connection>,
    notify: Arc<Notifier>,
}

impl LocalStore {
    /// Open (creating if needed, with its parent directory) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<LocalStore> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::InvalidConfig(format!(
                    "cannot create directory {} for the local datastore: {e}",
                    parent.display()
                ))
            })?;
        }
        let mut conn = open_connection(&path)?;
        init_schema(&mut conn, &path)?;
        Ok(LocalStore {
            path,
            conn: Mutex::new(conn),
            notify: Arc::new(Notifier {
                seq: Mutex::new(0),
                cv: Condvar::new(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run SQLite's integrity check (for tests and `calicoctl` diagnostics).
    pub fn check_integrity(&self) -> Result<()> {
        let conn = self.lock();
        let res: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(sql_err)?;
        if res == "ok" {
            Ok(())
        } else {
            Err(Error::Backend(format!(
                "{} is corrupt: {res}",
                self.path.display()
            )))
        }
    }

    /// Current compaction revision (history below it is gone).
    pub fn compact_revision(&self) -> Result<Revision> {
        self.read(|tx| meta(tx, META_COMPACT))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (the open transaction rolls back on drop), so poisoning is ignored.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` in a write transaction after reaping expired leases.
    fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        let reaped = reap_expired(&tx, now_ms())?;
        let out = f(&tx);
        // `f` checks every condition before writing anything, so after a
        // failed condition it is safe (and needed, to keep the reap) to
        // commit; after a SQLite error we roll back everything.
        let commit = match &out {
            Ok(_) => true,
            Err(Error::Backend(_)) => false,
            Err(_) => reaped,
        };
        if commit {
            tx.commit().map_err(sql_err)?;
            drop(conn);
            self.notify.bump();
        }
        out
    }

    /// Run `f` in a read transaction (one consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        // Never show a key whose lease has expired: reap first if one is due.
        let due = lease_due(&self.lock(), now_ms())?;
        if due {
            self.write(|_| Ok(()))?;
        }
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(sql_err)?;
        Ok(out)
    }

    /// Apply ops atomically; returns the revision and each op's previous kv.
    fn apply(&self, ops: &[Op]) -> Result<(Revision, Vec<Option<KeyValue>>)> {
        check_txn_shape(ops, MAX_TXN_OPS)?;
        self.write(|tx| {
            let mut prevs = Vec::with_capacity(ops.len());
            for op in ops {
                let current = read_kv(tx, op.key())?;
                op.check(current.as_ref())?;
                if let Some(lease) = op.lease() {
                    if !lease_exists(tx, lease)? {
                        return Err(lease_not_found(lease));
                    }
                }
                prevs.push(current);
            }
            let revision = meta(tx, META_REVISION)?;
            if ops.is_empty() {
                return Ok((revision, prevs));
            }
            let revision = revision + 1;
            for (seq, (op, prev)) in ops.iter().zip(&prevs).enumerate() {
                match op {
                    Op::Create { key, value, .. }
                    | Op::Update { key, value, .. }
                    | Op::Put { key, value, .. } => put_key(
                        tx,
                        revision,
                        seq as i64,
                        key,
                        value,
                        op.lease().unwrap_or(0),
                        prev.as_ref(),
                    )?,
                    Op::Delete { .. } => {
                        let prev = prev.as_ref().expect("delete condition checked presence");
                        delete_key(tx, revision, seq as i64, prev)?
                    }
                }
            }
            set_meta(tx, META_REVISION, revision)?;
            auto_compact(tx, revision)?;
            Ok((revision, prevs))
        })
    }
}

impl Datastore for LocalStore {
    fn describe(&self) -> String {
        format!("local ({})", self.path.display())
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.read(|tx| read_kv(tx, key))
    }

    fn list(&self, prefix: &str) -> Result<ListResult> {
        self.read(|tx| {
            let revision = meta(tx, META_REVISION)?;
            // Two statements rather than `(?2 IS NULL OR key < ?2)`, so that
            // SQLite bounds the index range on both sides.
            let start = prefix.as_bytes();
            let kvs = match prefix_range_end(start) {
                Some(end) => tx
                    .prepare_cached(&format!(
                        "SELECT {KV_COLUMNS} FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key"
                    ))
                    .and_then(|mut s| {
                        s.query_map(params![start, end], row_to_kv)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    }),
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {KV_COLUMNS} FROM kv WHERE key >= ?1 ORDER BY key"
                    ))
                    .and_then(|mut s| {
                        s.query_map(params![start], row_to_kv)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    }),
            }
            .map_err(sql_err)?;
            Ok(ListResult { kvs, revision })
        })
    }

    fn create(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision> {
        let op = Op::Create {
            key: key.to_string(),
            value: value.to_vec(),
            lease,
        };
        Ok(self.apply(&[op])?.0)
    }

    fn update(
        &self,
        key: &str,
        value: &[u8],
        mod_revision: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        let op = Op::Update {
            key: key.to_string(),
            value: value.to_vec(),
            mod_revision,
            lease,
        };
        Ok(self.apply(&[op])?.0)
    }

    fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision> {
        let op = Op::Put {
            key: key.to_string(),
            value: value.to_vec(),
            lease,
        };
        Ok(self.apply(&[op])?.0)
    }

    fn delete(&self, key: &str, mod_revision: Option<Revision>) -> Result<KeyValue> {
        let op = Op::Delete {
            key: key.to_string(),
            mod_revision,
        };
        let (_, mut prevs) = self.apply(&[op])?;
        prevs
            .pop()
            .flatten()
            .ok_or_else(|| Error::Backend(format!("delete of {key} returned no previous value")))
    }

    fn txn(&self, ops: &[Op]) -> Result<Revision> {
        Ok(self.apply(ops)?.0)
    }

    fn max_txn_ops(&self) -> usize {
        MAX_TXN_OPS
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let ttl_ms = (ttl.as_millis() as i64).max(1);
        self.write(|tx| {
            let id = meta(tx, META_NEXT_LEASE)?;
            set_meta(tx, META_NEXT_LEASE, id + 1)?;
            tx.execute(
                "INSERT INTO lease (id, ttl_ms, deadline_ms) VALUES (?1, ?2, ?3)",
                params![id, ttl_ms, now_ms() + ttl_ms],
            )
            .map_err(sql_err)?;
            Ok(id)
        })
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        // `write` reaps first, so an expired lease is gone by now: NotFound.
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE lease SET deadline_ms = ?1 + ttl_ms WHERE id = ?2",
                    params![now_ms(), lease],
                )
                .map_err(sql_err)?;
            if n == 0 {
                return Err(lease_not_found(lease));
            }
            Ok(())
        })
    }

    fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.write(|tx| {
            if !lease_exists(tx, lease)? {
                return Err(lease_not_found(lease));
            }
            revoke_in_tx(tx, lease)
        })
    }

    fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch> {
        let current = self.current_revision()?;
        let start = if start_revision <= 0 {
            current + 1
        } else {
            start_revision
        };
        // A connection of its own: the poller thread must not contend with
        // this handle's users for the connection mutex.
        let conn = open_connection(&self.path)?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let poller = Poller {
            conn,
            prefix: prefix.as_bytes().to_vec(),
            end: prefix_range_end(prefix.as_bytes()),
            next: start,
            tx,
            stop: stop.clone(),
            notify: self.notify.clone(),
            last_data_version: None,
        };
        thread::Builder::new()
            .name("calico-ds-watch".into())
            .spawn(move || poller.run())
            .map_err(|e| Error::Backend(format!("cannot start watch thread: {e}")))?;
        Ok(Watch::new(
            rx,
            Box::new(StopOnDrop {
                stop,
                notify: self.notify.clone(),
            }),
        ))
    }

    fn current_revision(&self) -> Result<Revision> {
        self.read(|tx| meta(tx, META_REVISION))
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        self.write(|tx| {
            let compacted = meta(tx, META_COMPACT)?;
            if revision <= compacted {
                return Err(Error::Compacted {
                    requested: revision,
                    compacted,
                });
            }
            let current = meta(tx, META_REVISION)?;
            if revision > current {
                return Err(Error::Backend(format!(
                    "cannot compact to revision {revision}: the store is at revision {current}"
                )));
            }
            compact_in_tx(tx, revision)
        })
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path).map_err(|e| {
        Error::InvalidConfig(format!(
            "cannot open local datastore {}: {e}",
            path.display()
        ))
    })?;
    conn.busy_handler(Some(busy_wait)).map_err(sql_err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| {
            Error::InvalidConfig(format!(
                "cannot open local datastore {}: {e}",
                path.display()
            ))
        })?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::InvalidConfig(format!(
            "local datastore {}: cannot use WAL journal mode (got {mode}); \
             the file must be on a local filesystem",
            path.display()
        )));
    }
    // Per connection, not persistent: set on every connection.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_err)?;
    Ok(conn)
}

fn init_schema(conn: &mut Connection, path: &Path) -> Result<()> {
    let version = |c: &Connection| -> Result<i64> {
        c.pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql_err)
    };
    let check = |v: i64| -> Result<bool> {
        match v {
            0 => Ok(false),
            SCHEMA_VERSION => Ok(true),
            v => Err(Error::InvalidConfig(format!(
                "local datastore {} has schema version {v}; this build understands {SCHEMA_VERSION}",
                path.display()
            ))),
        }
    };
    if check(version(conn)?)? {
        return Ok(());
    }
    // Several processes may race to create the schema; the write lock
    // serialises them and the re-check makes the losers no-ops.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    if !check(version(&tx)?)? {
        tx.execute_batch(SCHEMA).map_err(sql_err)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql_err)?;
    }
    tx.commit().map_err(sql_err)
}

fn meta(c: &Connection, name: &str) -> Result<i64> {
    c.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)))
        .map_err(sql_err)
}

fn set_meta(c: &Connection, name: &str, value: i64) -> Result<()> {
    c.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")
        .and_then(|mut s| s.execute(params![name, value]))
        .map_err(sql_err)?;
    Ok(())
}

fn row_to_kv(r: &Row) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_string(r.get(0)?),
        value: r.get(1)?,
        create_revision: r.get(2)?,
        mod_revision: r.get(3)?,
        version: r.get(4)?,
        lease: r.get(5)?,
    })
}

fn read_kv(c: &Connection, key: &str) -> Result<Option<KeyValue>> {
    c.prepare_cached(&format!("SELECT {KV_COLUMNS} FROM kv WHERE key = ?1"))
        .and_then(|mut s| s.query_row([key.as_bytes()], row_to_kv).optional())
        .map_err(sql_err)
}

fn lease_exists(c: &Connection, lease: LeaseId) -> Result<bool> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM lease WHERE id = ?1)")
        .and_then(|mut s| s.query_row([lease], |r| r.get(0)))
        .map_err(sql_err)
}

fn lease_due(c: &Connection, now: i64) -> Result<bool> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM lease WHERE deadline_ms <= ?1)")
        .and_then(|mut s| s.query_row([now], |r| r.get(0)))
        .map_err(sql_err)
}

fn insert_event(
    c: &Connection,
    revision: Revision,
    seq: i64,
    key: &str,
    new: Option<&KeyValue>,
    prev: Option<&KeyValue>,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO event (revision, seq, key, deleted, value, create_revision, version, lease, \
         prev_value, prev_create_revision, prev_mod_revision, prev_version, prev_lease) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut s| {
        s.execute(params![
            revision,
            seq,
            key.as_bytes(),
            new.is_none(),
            new.map(|kv| &kv.value),
            new.map(|kv| kv.create_revision),
            new.map(|kv| kv.version),
            new.map(|kv| kv.lease),
            prev.map(|kv| &kv.value),
            prev.map(|kv| kv.create_revision),
            prev.map(|kv| kv.mod_revision),
            prev.map(|kv| kv.version),
            prev.map(|kv| kv.lease),
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

fn put_key(
    c: &Connection,
    revision: Revision,
    seq: i64,
    key: &str,
    value: &[u8],
    lease: LeaseId,
    prev: Option<&KeyValue>,
) -> Result<()> {
    let kv = KeyValue {
        key: key.to_string(),
        value: value.to_vec(),
        create_revision: prev.map_or(revision, |p| p.create_revision),
        mod_revision: revision,
        version: prev.map_or(1, |p| p.version + 1),
        lease,
    };
    c.prepare_cached(
        "INSERT INTO kv (key, value, create_revision, mod_revision, version, lease) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
         create_revision = excluded.create_revision, mod_revision = excluded.mod_revision, \
         version = excluded.version, lease = excluded.lease",
    )
    .and_then(|mut s| {
        s.execute(params![
            key.as_bytes(),
            value,
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.lease
        ])
    })
    .map_err(sql_err)?;
    insert_event(c, revision, seq, key, Some(&kv), prev)
}

fn delete_key(c: &Connection, revision: Revision, seq: i64, prev: &KeyValue) -> Result<()> {
    c.prepare_cached("DELETE FROM kv WHERE key = ?1")
        .and_then(|mut s| s.execute([prev.key.as_bytes()]))
        .map_err(sql_err)?;
    insert_event(c, revision, seq, &prev.key, None, Some(prev))
}

/// Delete the lease and its keys; the key deletions share one new revision.
fn revoke_in_tx(c: &Connection, lease: LeaseId) -> Result<()> {
    let keys = c
        .prepare_cached(&format!(
            "SELECT {KV_COLUMNS} FROM kv WHERE lease = ?1 ORDER BY key"
        ))
        .and_then(|mut s| {
            s.query_map([lease], row_to_kv)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql_err)?;
    if !keys.is_empty() {
        let revision = meta(c, META_REVISION)? + 1;
        for (seq, kv) in keys.iter().enumerate() {
            delete_key(c, revision, seq as i64, kv)?;
        }
        set_meta(c, META_REVISION, revision)?;
    }
    c.execute("DELETE FROM lease WHERE id = ?1", [lease])
        .map_err(sql_err)?;
    Ok(())
}

/// Revoke every lease whose deadline has passed. True if anything changed.
fn reap_expired(c: &Connection, now: i64) -> Result<bool> {
    let expired = c
        .prepare_cached("SELECT id FROM lease WHERE deadline_ms <= ?1 ORDER BY deadline_ms, id")
        .and_then(|mut s| {
            s.query_map([now], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql_err)?;
    for lease in &expired {
        tracing::debug!(lease, "local datastore: lease expired");
        revoke_in_tx(c, *lease)?;
    }
    Ok(!expired.is_empty())
}

fn compact_in_tx(c: &Connection, revision: Revision) -> Result<()> {
    c.execute("DELETE FROM event WHERE revision < ?1", [revision])
        .map_err(sql_err)?;
    set_meta(c, META_COMPACT, revision)
}

fn auto_compact(c: &Connection, revision: Revision) -> Result<()> {
    if revision % AUTO_COMPACT_EVERY != 0 || revision <= AUTO_COMPACT_RETAIN {
        return Ok(());
    }
    let target = revision - AUTO_COMPACT_RETAIN;
    if target > meta(c, META_COMPACT)? {
        compact_in_tx(c, target)?;
    }
    Ok(())
}

struct StopOnDrop {
    stop: Arc<AtomicBool>,
    notify: Arc<Notifier>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the poller so it exits now rather than at the next tick.
        self.notify.bump();
    }
}

/// The thread behind a local watch: tails the event log.
struct Poller {
    conn: Connection,
    prefix: Vec<u8>,
    end: Option<Vec<u8>>,
    /// Next revision to deliver.
    next: Revision,
    tx: Sender<WatchEvent>,
    stop: Arc<AtomicBool>,
    notify: Arc<Notifier>,
    last_data_version: Option<i64>,
}

enum PollOutcome {
    Continue,
    Ended,
}

impl Poller {
    fn run(mut self) {
        let mut seen = self.notify.current();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            match self.poll_once() {
                Ok(PollOutcome::Continue) => {}
                Ok(PollOutcome::Ended) => return,
                Err(e) => {
                    let _ = self.tx.send(WatchEvent::Error(e));
                    return;
                }
            }
            seen = self.notify.wait(seen, POLL_INTERVAL);
        }
    }

    fn poll_once(&mut self) -> Result<PollOutcome> {
        let mut changed_here = false;
        let now = now_ms();
        if lease_due(&self.conn, now)? {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            changed_here = reap_expired(&tx, now)?;
            tx.commit().map_err(sql_err)?;
            if changed_here {
                self.notify.bump();
            }
        }
        // data_version changes when any OTHER connection commits; our own
        // reap above does not change it, hence `changed_here`. It is read
        // before the snapshot below, so a commit racing with the read shows
        // up as a new data_version next time.
        let data_version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(sql_err)?;
        if !changed_here && self.last_data_version == Some(data_version) {
            return Ok(PollOutcome::Continue);
        }
        self.last_data_version = Some(data_version);

        let tx = self.conn.transaction().map_err(sql_err)?;
        let compacted = meta(&tx, META_COMPACT)?;
        if self.next < compacted {
            let _ = self.tx.send(WatchEvent::Compacted {
                compact_revision: compacted,
            });
            return Ok(PollOutcome::Ended);
        }
        let revision = meta(&tx, META_REVISION)?;
        if revision < self.next {
            return Ok(PollOutcome::Continue);
        }
        let events = tx
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM event \
                 WHERE revision >= ?1 AND revision <= ?2 AND key >= ?3 AND (?4 IS NULL OR key < ?4) \
                 ORDER BY revision, seq"
            ))
            .and_then(|mut s| {
                s.query_map(
                    params![self.next, revision, self.prefix, self.end],
                    row_to_event,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sql_err)?;
        drop(tx);
        for ev in events {
            if self.tx.send(ev).is_err() {
                return Ok(PollOutcome::Ended); // the Watch was dropped
            }
        }
        self.next = revision + 1;
        Ok(PollOutcome::Continue)
    }
}

fn row_to_event(r: &Row) -> rusqlite::Result<WatchEvent> {
    let revision: Revision = r.get(0)?;
    let key = key_string(r.get(1)?);
    let deleted: bool = r.get(2)?;
    let prev = match r.get::<_, Option<Revision>>(9)? {
        Some(prev_mod) => Some(KeyValue {
            key: key.clone(),
            value: r.get(7)?,
            create_revision: r.get(8)?,
            mod_revision: prev_mod,
            version: r.get(10)?,
            lease: r.get(11)?,
        }),
        None => None,
    };
    Ok(if deleted {
        WatchEvent::Delete {
            key,
            mod_revision: revision,
            prev,
        }
    } else {
        WatchEvent::Put {
            kv: KeyValue {
                key,
                value: r.get(3)?,
                create_revision: r.get(4)?,
                mod_revision: revision,
                version: r.get(5)?,
                lease: r.get(6)?,
            },
            prev,
        }
    })
}
