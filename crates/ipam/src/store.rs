//! Typed access to the IPAM keys: JSON values with the revision they were
//! read at, compare-and-swap writes, and the bounded retry loop every
//! read-modify-write runs in.

use std::time::Duration;

use calico_datastore::{Datastore, KeyValue, Op, Revision};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{IpamError, Result};

/// Attempts per read-modify-write before giving up (upstream: 100).
pub const MAX_RETRIES: usize = 100;

/// A decoded value and the revision it was read at (the CAS token).
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub key: String,
    pub value: T,
    pub rev: Revision,
}

impl<T> Versioned<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Versioned<U> {
        Versioned {
            key: self.key,
            value: f(self.value),
            rev: self.rev,
        }
    }
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("IPAM values always serialise")
}

pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Versioned<T>> {
    let value = serde_json::from_slice(&kv.value).map_err(|e| IpamError::Corrupt {
        key: kv.key.clone(),
        message: e.to_string(),
    })?;
    Ok(Versioned {
        key: kv.key.clone(),
        value,
        rev: kv.mod_revision,
    })
}

pub fn get<T: DeserializeOwned>(store: &dyn Datastore, key: &str) -> Result<Option<Versioned<T>>> {
    match store.get(key)? {
        Some(kv) => decode(&kv).map(Some),
        None => Ok(None),
    }
}

/// Everything under `prefix` that decodes, plus `(key, error)` for what does not.
pub struct Listing<T> {
    pub items: Vec<Versioned<T>>,
    pub bad: Vec<(String, String)>,
}

pub fn list<T: DeserializeOwned>(
    store: &dyn Datastore,
    prefix: &str,
    key_ok: impl Fn(&str) -> bool,
) -> Result<Listing<T>> {
    let res = store.list(prefix)?;
    let mut out = Listing {
        items: Vec::with_capacity(res.kvs.len()),
        bad: Vec::new(),
    };
    for kv in res.kvs {
        if !key_ok(&kv.key) {
            continue;
        }
        match decode(&kv) {
            Ok(v) => out.items.push(v),
            Err(e) => out.bad.push((kv.key.clone(), e.to_string())),
        }
    }
    Ok(out)
}

/// Create (rev 0) or compare-and-swap update.
pub fn write_op<T: Serialize>(key: &str, value: &T, rev: Revision) -> Op {
    if rev == 0 {
        Op::Create {
            key: key.to_string(),
            value: encode(value),
            lease: None,
        }
    } else {
        Op::Update {
            key: key.to_string(),
            value: encode(value),
            mod_revision: rev,
            lease: None,
        }
    }
}

pub fn delete_op(key: &str, rev: Revision) -> Op {
    Op::Delete {
        key: key.to_string(),
        mod_revision: Some(rev),
    }
}

/// Bounded retries with a little random back-off after each conflict, so
/// that contending allocators (threads, processes, hosts) spread out.
pub struct Retry {
    what: &'static str,
    attempt: usize,
    rng: u64,
    /// Back-off unit: about one write's latency, so that contenders spread
    /// over the time a commit takes (100 µs until a write was timed).
    unit: Duration,
}

impl Retry {
    pub fn new(what: &'static str) -> Retry {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((std::process::id() as u64) << 32)
            ^ (&what as *const _ as u64);
        Retry {
            what,
            attempt: 0,
            rng: seed | 1,
            unit: Duration::from_micros(100),
        }
    }

    /// Records how long the write that lost took.
    pub fn lost_after(&mut self, took: Duration) {
        self.unit = took.clamp(Duration::from_micros(50), Duration::from_millis(20));
    }

    /// Call at the top of each attempt; errs once the attempts are used up.
    pub fn attempt(&mut self) -> Result<()> {
        self.attempt += 1;
        if self.attempt > MAX_RETRIES {
            return Err(IpamError::MaxRetries(self.what.to_string()));
        }
        if self.attempt > 1 {
            // xorshift64
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let cap = self.unit.as_micros() as u64 * (1u64 << (self.attempt - 2).min(3));
            std::thread::sleep(Duration::from_micros(self.rng % cap.max(1)));
        }
        Ok(())
    }

    pub fn attempts_made(&self) -> usize {
        self.attempt
    }
}
