//! `etcdv3` backend: etcd v3 through `etcd-client`, driven by a private tokio
//! runtime that every (synchronous) method blocks on.
//!
//! Mapping:
//! - create = txn `If(Version(key) == 0)`, update = `If(ModRevision(key) == rev)`,
//!   delete = `If(Version(key) > 0)` or `If(ModRevision(key) == rev)`; a
//!   multi-op txn ANDs every op's compare. The txn's Else branch reads each
//!   compared key, so a failure is explained (first failing op) from the same
//!   snapshot without a second round trip. One compare and one Then/Else op
//!   per op keeps a txn of `max_txn_ops()` ops within etcd's `--max-txn-ops`.
//! - list = range over the prefix, paginated at one pinned revision (so a huge
//!   prefix never exceeds gRPC message limits), revision from the header.
//! - watch = etcd watch with `prev_kv`, started at the requested revision;
//!   a compaction response becomes `WatchEvent::Compacted`.
//! - leases map to etcd leases (TTL rounded up to whole seconds; etcd also
//!   raises TTLs below its minimum, about 2 s with default raft timings).
//!
//! Reachability: every call is bounded by `EtcdConfig::timeout`, and an
//! unreachable endpoint yields ONE `Error::Unavailable` line. Because
//! etcd-client connects lazily and gRPC errors are verbose, the cause is
//! taken from a plain TCP connect to the endpoint when that fails
//! ("connection refused"), and from gRPC otherwise.

use std::future::Future;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    Identity, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::runtime::Runtime;

use crate::{
    check_txn_shape, lease_not_found, prefix_range_end, Datastore, Error, EtcdConfig, KeyValue,
    LeaseId, ListResult, Op, Result, Revision, Watch, WatchEvent, DEFAULT_ETCD_TIMEOUT,
};

/// etcd's server default for `--max-txn-ops`.
pub const ETCD_MAX_TXN_OPS: usize = 128;

/// Page size for `list`: small enough to keep each response far below the
/// 4 MiB gRPC default even with large values.
const LIST_PAGE: i64 = 500;

/// HTTP/2 pings on open streams (watches) detect a dead server or a
/// half-open connection. Pings only while streams are open, and not more
/// often than etcd's `--grpc-keepalive-min-time` (5 s), else etcd answers
/// with GOAWAY "too many pings".
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Owns the runtime; shut down without blocking so that dropping the store
/// (or the last watch) is fine even from inside another async context.
struct RuntimeHolder(Option<Runtime>);

impl Drop for RuntimeHolder {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub struct EtcdStore {
    /// Shared with every watch, so the runtime outlives the store's watches.
    rt: Arc<RuntimeHolder>,
    client: Client,
    endpoints: Vec<String>,
    /// Endpoints joined with ',' as named in errors and `describe()`.
    label: String,
    timeout: Duration,
}

impl EtcdStore {
    /// Connect and verify that etcd answers (within `cfg.timeout`).
    pub fn connect(cfg: &EtcdConfig) -> Result<EtcdStore> {
        let (endpoints, use_tls) = normalize_endpoints(cfg)?;
        let label = endpoints.join(",");
        let timeout = if cfg.timeout.is_zero() {
            DEFAULT_ETCD_TIMEOUT
        } else {
            cfg.timeout
        };
        let deadline = Instant::now() + timeout;

        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive_while_idle(false)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            // Fail fast rather than hang on a member cut off from its leader.
            .with_require_leader(true);
        if let Some(user) = &cfg.username {
            opts = opts
                .with_user(user.clone(), cfg.password.clone().unwrap_or_default())
                // Simple auth tokens expire (5 min idle by default); a
                // long-running agent must re-authenticate transparently.
                .with_auto_token_refresh(true);
        }
        if use_tls {
            opts = opts.with_tls(tls_options(cfg)?);
        }

        // A cheap TCP connect first: it gives the precise cause
        // ("connection refused") instead of a gRPC retry/timeout.
        if let Some(cause) = probe_all(&endpoints, deadline) {
            return Err(Error::Unavailable {
                endpoint: label,
                cause,
            });
        }

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("calico-etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Backend(format!("cannot start etcd client runtime: {e}")))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let connected = rt.block_on(async {
            tokio::time::timeout(remaining, async {
                let client = Client::connect(&endpoints, Some(opts)).await?;
                // etcd-client connects lazily: make one real call.
                client.maintenance_client().status().await?;
                Ok::<_, etcd_client::Error>(client)
            })
            .await
        });
        let store_label = label.clone();
        let fail = |cause: String| -> Error {
            let cause =
                probe_all(&endpoints, Instant::now() + Duration::from_secs(1)).unwrap_or(cause);
            Error::Unavailable {
                endpoint: store_label.clone(),
                cause,
            }
        };
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(match classify(&label, e) {
                    Error::Unavailable { cause, .. } => fail(cause),
                    other => other,
                })
            }
            Err(_) => return Err(fail(format!("no response within {timeout:?}"))),
        };
        Ok(EtcdStore {
            rt: Arc::new(RuntimeHolder(Some(rt))),
            client,
            endpoints,
            label,
            timeout,
        })
    }

    /// The endpoints, normalized with their scheme.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn runtime(&self) -> &Runtime {
        self.rt
            .0
            .as_ref()
            .expect("runtime lives as long as the store")
    }

    /// Block on `f`. From inside some other tokio runtime `block_on` would
    /// panic, so there the blocking happens on a scoped helper thread.
    fn block_on<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let rt = self.runtime();
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(move || rt.block_on(f))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        } else {
            rt.block_on(f)
        }
    }

    /// One etcd call, bounded by the timeout, with errors mapped.
    fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, etcd_client::Error>> + Send,
        T: Send,
    {
        let timeout = self.timeout;
        match self.block_on(async move { tokio::time::timeout(timeout, f).await }) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_err(e)),
            Err(_) => Err(self.unavailable(format!("no response within {timeout:?}"))),
        }
    }

    fn map_err(&self, e: etcd_client::Error) -> Error {
        match classify(&self.label, e) {
            Error::Unavailable { cause, .. } => self.unavailable(cause),
            other => other,
        }
    }

    /// Unavailable, with the TCP-level cause when the endpoint is down.
    fn unavailable(&self, cause: String) -> Error {
        let probe_deadline = Instant::now() + self.timeout.min(Duration::from_secs(1));
        Error::Unavailable {
            endpoint: self.label.clone(),
            cause: probe_all(&self.endpoints, probe_deadline).unwrap_or(cause),
        }
    }

    fn get_page(
        &self,
        from: Vec<u8>,
        end: Vec<u8>,
        revision: Revision,
    ) -> Result<(Vec<KeyValue>, bool, Revision)> {
        let mut kv = self.client.kv_client();
        let mut opts = GetOptions::new().with_range(end).with_limit(LIST_PAGE);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let resp = self.call(async move { kv.get(from, Some(opts)).await })?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((
            resp.kvs().iter().map(convert_kv).collect(),
            resp.more(),
            rev,
        ))
    }

    fn list_once(&self, prefix: &str) -> Result<ListResult> {
        // etcd spells "no upper bound" as range_end "\0"; an empty key is
        // not allowed, so the empty prefix starts at "\0" too.
        let end = prefix_range_end(prefix.as_bytes()).unwrap_or_else(|| vec![0]);
        let mut from = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.as_bytes().to_vec()
        };
        let mut revision = 0;
        let mut kvs = Vec::new();
        loop {
            let (page, more, rev) = self.get_page(from, end.clone(), revision)?;
            if revision == 0 {
                revision = rev;
            }
            let last = page.last().map(|kv| kv.key.clone());
            kvs.extend(page);
            match last {
                Some(last) if more => {
                    from = last.into_bytes();
                    from.push(0); // the next key after `last`
                }
                _ => break,
            }
        }
        Ok(ListResult { kvs, revision })
    }

    /// Run ops as one etcd txn; returns the revision and, per op, the
    /// deleted kv (for deletes).
    fn run_txn(&self, ops: &[Op]) -> Result<(Revision, Vec<Option<KeyValue>>)> {
        check_txn_shape(ops, ETCD_MAX_TXN_OPS)?;
        let mut compares = Vec::new();
        let mut then = Vec::with_capacity(ops.len());
        let mut otherwise = Vec::new();
        let mut compared = Vec::new(); // op index of each Else-branch get
        for (i, op) in ops.iter().enumerate() {
            let key = op.key().as_bytes().to_vec();
            let compare = match op {
                Op::Create { .. } => Some(Compare::version(key.clone(), CompareOp::Equal, 0)),
                Op::Update { mod_revision, .. } => Some(if *mod_revision > 0 {
                    Compare::mod_revision(key.clone(), CompareOp::Equal, *mod_revision)
                } else {
                    // No existing key has mod_revision <= 0, but a missing
                    // key would match `== 0`: use a compare that never holds.
                    Compare::version(key.clone(), CompareOp::Less, 0)
                }),
                Op::Put { .. } => None,
                Op::Delete { mod_revision, .. } => Some(match mod_revision {
                    None => Compare::version(key.clone(), CompareOp::Greater, 0),
                    Some(rev) if *rev > 0 => {
                        Compare::mod_revision(key.clone(), CompareOp::Equal, *rev)
                    }
                    Some(_) => Compare::version(key.clone(), CompareOp::Less, 0),
                }),
            };
            if let Some(c) = compare {
                compares.push(c);
                otherwise.push(TxnOp::get(key.clone(), None));
                compared.push(i);
            }
            then.push(match op {
                Op::Create { value, .. } | Op::Update { value, .. } | Op::Put { value, .. } => {
                    let lease = op.lease().unwrap_or(0);
                    TxnOp::put(
                        key,
                        value.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    )
                }
                Op::Delete { .. } => TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key())),
            });
        }
        let txn = Txn::new().when(compares).and_then(then).or_else(otherwise);
        let mut kv = self.client.kv_client();
        let resp = self
            .call(async move { kv.txn(txn).await })
            .map_err(|e| match e {
                // The server does not say which lease; name the first one.
                Error::NotFound { key } if key == "lease" => {
                    lease_not_found(ops.iter().find_map(Op::lease).unwrap_or(0))
                }
                other => other,
            })?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let responses = resp.op_responses();
        if resp.succeeded() {
            let prevs = responses
                .iter()
                .map(|r| match r {
                    TxnOpResponse::Delete(d) => d.prev_kvs().first().map(convert_kv),
                    _ => None,
                })
                .collect();
            return Ok((revision, prevs));
        }
        for (i, r) in compared.iter().zip(&responses) {
            let current = match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(convert_kv),
                _ => None,
            };
            ops[*i].check(current.as_ref())?;
        }
        Err(Error::Backend(format!(
            "etcd at {}: transaction failed but no condition fails on its snapshot",
            self.label
        )))
    }

    /// The store's compaction revision, found by watching from revision 1
    /// (etcd reports it on a watch that starts below it). 0 if unknown.
    fn probe_compact_revision(&self) -> Revision {
        let mut watch = self.client.watch_client();
        let probe = async move {
            let opts = WatchOptions::new().with_start_revision(1);
            let mut stream = watch.watch(vec![0u8], Some(opts)).await?;
            while let Some(resp) = stream.message().await? {
                if resp.compact_revision() != 0 {
                    return Ok(resp.compact_revision());
                }
                if resp.canceled() {
                    break;
                }
            }
            Ok::<_, etcd_client::Error>(0)
        };
        let bound = self.timeout.min(Duration::from_secs(2));
        match self.block_on(async move { tokio::time::timeout(bound, probe).await }) {
            Ok(Ok(rev)) => rev,
            _ => 0,
        }
    }
}

impl Datastore for EtcdStore {
    fn describe(&self) -> String {
        format!("etcdv3 ({})", self.label)
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut kv = self.client.kv_client();
        let key = key.to_string();
        let resp = self.call(async move { kv.get(key, None).await })?;
        Ok(resp.kvs().first().map(convert_kv))
    }

    fn list(&self, prefix: &str) -> Result<ListResult> {
        // Pages are read at one pinned revision; if that revision is
        // compacted between pages, start over at a fresh one.
        let mut attempts = 0;
        loop {
            match self.list_once(prefix) {
                Err(Error::Compacted { .. }) if attempts < 3 => attempts += 1,
                other => return other,
            }
        }
    }

    fn create(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision> {
        let op = Op::Create {
            key: key.to_string(),
            value: value.to_vec(),
            lease,
        };
        Ok(self.run_txn(&[op])?.0)
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
        Ok(self.run_txn(&[op])?.0)
    }

    fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision> {
        let op = Op::Put {
            key: key.to_string(),
            value: value.to_vec(),
            lease,
        };
        Ok(self.run_txn(&[op])?.0)
    }

    fn delete(&self, key: &str, mod_revision: Option<Revision>) -> Result<KeyValue> {
        let op = Op::Delete {
            key: key.to_string(),
            mod_revision,
        };
        let (_, mut prevs) = self.run_txn(&[op])?;
        prevs.pop().flatten().ok_or_else(|| {
            Error::Backend(format!(
                "etcd at {}: delete of {key} returned no previous value",
                self.label
            ))
        })
    }

    fn txn(&self, ops: &[Op]) -> Result<Revision> {
        Ok(self.run_txn(ops)?.0)
    }

    fn max_txn_ops(&self) -> usize {
        ETCD_MAX_TXN_OPS
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = secs.max(1) as i64;
        let mut lease = self.client.lease_client();
        let resp = self.call(async move { lease.grant(secs, None).await })?;
        if !resp.error().is_empty() {
            return Err(Error::Backend(format!(
                "etcd at {}: lease grant failed: {}",
                self.label,
                resp.error()
            )));
        }
        Ok(resp.id())
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let mut client = self.client.lease_client();
        // etcd-client sends one keep-alive and reads its answer (TTL <= 0
        // means the lease is gone); the stream closes when dropped.
        match self.call(async move { client.keep_alive(lease).await.map(|_| ()) }) {
            Err(Error::NotFound { .. }) => Err(lease_not_found(lease)),
            other => other,
        }
    }

    fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        let mut client = self.client.lease_client();
        match self.call(async move { client.revoke(lease).await.map(|_| ()) }) {
            Err(Error::NotFound { .. }) => Err(lease_not_found(lease)),
            other => other,
        }
    }

    fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch> {
        let mut client = self.client.watch_client();
        let mut opts = WatchOptions::new().with_prefix().with_prev_key();
        if start_revision > 0 {
            opts = opts.with_start_revision(start_revision);
        }
        let prefix = prefix.as_bytes().to_vec();
        let label = self.label.clone();
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = self.runtime().spawn(async move {
            let mut ready = Some(ready_tx);
            let mut stream = match client.watch(prefix, Some(opts)).await {
                Ok(s) => s,
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(e));
                    }
                    return;
                }
            };
            loop {
                let resp = match stream.message().await {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        let _ = tx.send(WatchEvent::Error(Error::Unavailable {
                            endpoint: label,
                            cause: "watch stream closed by the server".into(),
                        }));
                        return;
                    }
                    Err(e) => {
                        match ready.take() {
                            Some(r) => {
                                let _ = r.send(Err(e));
                            }
                            None => {
                                let _ = tx.send(WatchEvent::Error(classify(&label, e)));
                            }
                        }
                        return;
                    }
                };
                if resp.created() {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                }
                for ev in resp.events() {
                    if let Some(ev) = convert_event(ev) {
                        if tx.send(ev).is_err() {
                            return; // the Watch was dropped
                        }
                    }
                }
                if resp.compact_revision() != 0 {
                    let _ = tx.send(WatchEvent::Compacted {
                        compact_revision: resp.compact_revision(),
                    });
                    return;
                }
                if resp.canceled() {
                    let _ = tx.send(WatchEvent::Error(Error::Backend(format!(
                        "etcd at {label} cancelled the watch: {}",
                        resp.cancel_reason()
                    ))));
                    return;
                }
            }
        });
        let guard = AbortOnDrop {
            task,
            _rt: self.rt.clone(),
        };
        // Return only once etcd has registered the watch, so that with
        // start 0 ("from now") no write made after this call is missed.
        let timeout = self.timeout;
        match self.block_on(async move { tokio::time::timeout(timeout, ready_rx).await }) {
            Ok(Ok(Ok(()))) => Ok(Watch::new(rx, Box::new(guard))),
            Ok(Ok(Err(e))) => Err(self.map_err(e)),
            Ok(Err(_)) => Err(Error::Backend(format!(
                "etcd at {}: watch ended before it was created",
                self.label
            ))),
            Err(_) => Err(self.unavailable(format!("no response within {timeout:?}"))),
        }
    }

    fn current_revision(&self) -> Result<Revision> {
        // Status needs no key permissions, unlike a range read.
        let mut client = self.client.maintenance_client();
        let resp = self.call(async move { client.status().await })?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        let mut kv = self.client.kv_client();
        match self.call(async move { kv.compact(revision, None).await.map(|_| ()) }) {
            Err(Error::Compacted { .. }) => Err(Error::Compacted {
                requested: revision,
                compacted: self.probe_compact_revision(),
            }),
            other => other,
        }
    }
}

/// Aborting the task drops its gRPC stream, which cancels the watch in etcd.
/// Holds the runtime so that it outlives the store while watches remain.
struct AbortOnDrop {
    task: tokio::task::JoinHandle<()>,
    _rt: Arc<RuntimeHolder>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn convert_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn convert_event(ev: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = ev.kv()?;
    let prev = ev.prev_kv().map(convert_kv);
    Some(match ev.event_type() {
        EventType::Put => WatchEvent::Put {
            kv: convert_kv(kv),
            prev,
        },
        EventType::Delete => WatchEvent::Delete {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            mod_revision: kv.mod_revision(),
            prev,
        },
    })
}

// gRPC status codes (tonic::Code discriminants) we tell apart.
const CODE_CANCELLED: i32 = 1;
const CODE_UNKNOWN: i32 = 2;
const CODE_INVALID_ARGUMENT: i32 = 3;
const CODE_DEADLINE_EXCEEDED: i32 = 4;
const CODE_PERMISSION_DENIED: i32 = 7;
const CODE_UNAVAILABLE: i32 = 14;
const CODE_UNAUTHENTICATED: i32 = 16;

/// Map an etcd-client error. Lease-not-found comes back as
/// `NotFound { key: "lease" }` and compaction as `Compacted { 0, 0 }` for the
/// caller to fill in.
fn classify(label: &str, e: etcd_client::Error) -> Error {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            // The message is often just "transport error"; the cause (TLS
            // handshake, connection reset...) is in the source chain.
            let mut msg = status.message().to_string();
            let mut src = std::error::Error::source(&status);
            while let Some(inner) = src {
                let text = inner.to_string();
                if !msg.contains(&text) {
                    msg.push_str(": ");
                    msg.push_str(&text);
                }
                src = inner.source();
            }
            let code = status.code() as i32;
            if msg.contains("lease not found") {
                return Error::NotFound {
                    key: "lease".into(),
                };
            }
            if msg.contains("required revision has been compacted") {
                return Error::Compacted {
                    requested: 0,
                    compacted: 0,
                };
            }
            match code {
                CODE_UNAVAILABLE | CODE_DEADLINE_EXCEEDED | CODE_CANCELLED => Error::Unavailable {
                    endpoint: label.to_string(),
                    cause: one_line(&msg),
                },
                CODE_UNKNOWN if msg.contains("transport") || msg.contains("connect") => {
                    Error::Unavailable {
                        endpoint: label.to_string(),
                        cause: one_line(&msg),
                    }
                }
                CODE_INVALID_ARGUMENT | CODE_UNAUTHENTICATED
                    if msg.contains("authentication failed") || msg.contains("invalid auth") =>
                {
                    Error::InvalidConfig(format!("etcd at {label} rejected the credentials: {msg}"))
                }
                CODE_INVALID_ARGUMENT if msg.contains("user name is empty") => {
                    Error::InvalidConfig(format!(
                        "etcd at {label} requires a username and password: {msg}"
                    ))
                }
                CODE_PERMISSION_DENIED | CODE_UNAUTHENTICATED => {
                    Error::Backend(format!("etcd at {label} refused the request: {msg}"))
                }
                _ => Error::Backend(format!("etcd at {label}: {msg}")),
            }
        }
        etcd_client::Error::TransportError(t) => Error::Unavailable {
            endpoint: label.to_string(),
            cause: one_line(&error_chain(&t)),
        },
        etcd_client::Error::LeaseKeepAliveError(msg) if msg.contains("not found") => {
            Error::NotFound {
                key: "lease".into(),
            }
        }
        other => Error::Backend(format!("etcd at {label}: {other}")),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Endpoints with explicit schemes, and whether they use TLS.
fn normalize_endpoints(cfg: &EtcdConfig) -> Result<(Vec<String>, bool)> {
    let has_tls_material = cfg.ca_cert_file.is_some()
        || cfg.cert_file.is_some()
        || cfg.key_file.is_some()
        || cfg.ca_cert_pem.is_some()
        || cfg.cert_pem.is_some()
        || cfg.key_pem.is_some();
    let mut out = Vec::new();
    for ep in cfg
        .endpoints
        .iter()
        .flat_map(|e| e.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let ep = ep.trim_end_matches('/');
        let normalized = if ep.starts_with("http://") || ep.starts_with("https://") {
            ep.to_string()
        } else if ep.contains("://") {
            return Err(Error::InvalidConfig(format!(
                "etcd endpoint {ep}: only http:// and https:// are supported"
            )));
        } else if has_tls_material {
            format!("https://{ep}")
        } else {
            format!("http://{ep}")
        };
        if host_port(&normalized).is_empty() {
            return Err(Error::InvalidConfig(format!(
                "etcd endpoint {ep} has no host"
            )));
        }
        out.push(normalized);
    }
    if out.is_empty() {
        return Err(Error::InvalidConfig("no etcd endpoints configured".into()));
    }
    let tls = out[0].starts_with("https://");
    if out.iter().any(|e| e.starts_with("https://") != tls) {
        return Err(Error::InvalidConfig(format!(
            "etcd endpoints mix http and https: {}",
            out.join(",")
        )));
    }
    Ok((out, tls))
}

fn read_pem(
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
    what: &str,
) -> Result<Option<String>> {
    if let Some(pem) = inline {
        return Ok(Some(pem.clone()));
    }
    match file {
        Some(path) => std::fs::read_to_string(path).map(Some).map_err(|e| {
            Error::InvalidConfig(format!("cannot read etcd {what} {}: {e}", path.display()))
        }),
        None => Ok(None),
    }
}

fn tls_options(cfg: &EtcdConfig) -> Result<TlsOptions> {
    let mut tls = TlsOptions::new();
    if let Some(ca) = read_pem(&cfg.ca_cert_pem, &cfg.ca_cert_file, "CA certificate")? {
        tls = tls.ca_certificate(Certificate::from_pem(ca));
    }
    let cert = read_pem(&cfg.cert_pem, &cfg.cert_file, "client certificate")?;
    let key = read_pem(&cfg.key_pem, &cfg.key_file, "client key")?;
    match (cert, key) {
        (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(cert, key)),
        (None, None) => {}
        _ => {
            return Err(Error::InvalidConfig(
                "etcd client certificate and key must be configured together".into(),
            ))
        }
    }
    Ok(tls)
}

/// `host:port` of an endpoint URL (port 2379 if none).
fn host_port(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let hp = rest.split('/').next().unwrap_or("");
    if hp.is_empty() {
        return String::new();
    }
    let has_port = match hp.rfind(':') {
        Some(i) => !hp[i..].contains(']'),
        None => false,
    };
    if has_port {
        hp.to_string()
    } else {
        format!("{hp}:2379")
    }
}

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "connection timed out".into(),
        _ => e.to_string(),
    }
}

/// TCP-connect to one endpoint; the failure cause if it cannot be reached.
fn probe(endpoint: &str, deadline: Instant) -> std::result::Result<(), String> {
    let hp = host_port(endpoint);
    let addrs = hp
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hp}: {e}"))?;
    let mut cause = format!("{hp} resolves to no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("connection timed out".into());
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(_) => return Ok(()),
            Err(e) => cause = describe_io(&e),
        }
    }
    Err(cause)
}

/// None if any endpoint accepts TCP connections, else the first cause.
fn probe_all(endpoints: &[String], deadline: Instant) -> Option<String> {
    let mut first = None;
    for ep in endpoints {
        match probe(ep, deadline) {
            Ok(()) => return None,
            Err(cause) => {
                first.get_or_insert(cause);
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_defaults() {
        assert_eq!(host_port("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(host_port("https://etcd.example/"), "etcd.example:2379");
        assert_eq!(host_port("http://[::1]:4001"), "[::1]:4001");
        assert_eq!(host_port("http://[::1]"), "[::1]:2379");
    }

    #[test]
    fn endpoints_normalized() {
        let mut cfg = EtcdConfig::new(["127.0.0.1:2379", "http://10.0.0.1:2379/"]);
        assert_eq!(
            normalize_endpoints(&cfg).unwrap(),
            (
                vec![
                    "http://127.0.0.1:2379".to_string(),
                    "http://10.0.0.1:2379".to_string()
                ],
                false
            )
        );
        cfg.ca_cert_pem = Some("x".into());
        cfg.endpoints = vec!["10.0.0.1:2379,10.0.0.2:2379".into()];
        let (eps, tls) = normalize_endpoints(&cfg).unwrap();
        assert!(tls);
        assert_eq!(eps.len(), 2);
        cfg.endpoints = vec!["http://a:1".into(), "https://b:1".into()];
        assert!(matches!(
            normalize_endpoints(&cfg),
            Err(Error::InvalidConfig(_))
        ));
        cfg.endpoints = vec![];
        assert!(matches!(
            normalize_endpoints(&cfg),
            Err(Error::InvalidConfig(_))
        ));
    }
}
