//! A prefix of the datastore mirrored in memory: a snapshot, then a watch
//! from its revision; a broken or compacted watch starts over with a
//! snapshot (so nothing is missed and deletions are seen).

use std::collections::BTreeMap;
use std::time::Duration;

use calico_datastore::{Datastore, Error as StoreError, Watch, WatchEvent};

pub struct PrefixCache {
    prefix: String,
    pub values: BTreeMap<String, Vec<u8>>,
    watch: Option<Watch>,
}

impl PrefixCache {
    pub fn new(prefix: String) -> PrefixCache {
        PrefixCache {
            prefix,
            values: BTreeMap::new(),
            watch: None,
        }
    }

    /// Takes in what changed, waiting up to `timeout` for the first change;
    /// true if anything did.
    pub fn poll(&mut self, store: &dyn Datastore, timeout: Duration) -> Result<bool, StoreError> {
        let Some(watch) = &self.watch else {
            self.snapshot(store)?;
            return Ok(true);
        };
        let mut changed = false;
        let mut next = watch.recv_timeout(timeout);
        while let Some(ev) = next {
            match ev {
                WatchEvent::Put { kv, .. } => {
                    self.values.insert(kv.key, kv.value);
                }
                WatchEvent::Delete { key, .. } => {
                    self.values.remove(&key);
                }
                WatchEvent::Compacted { .. } | WatchEvent::Error(_) => {
                    self.snapshot(store)?;
                    return Ok(true);
                }
            }
            changed = true;
            next = watch.try_recv();
        }
        if watch.is_closed() {
            self.watch = None;
        }
        Ok(changed)
    }

    fn snapshot(&mut self, store: &dyn Datastore) -> Result<(), StoreError> {
        self.watch = None;
        let list = store.list(&self.prefix)?;
        self.values = list
            .kvs
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        self.watch = Some(store.watch(&self.prefix, list.revision + 1)?);
        Ok(())
    }

    /// Forget the watch: the next poll takes a snapshot.
    pub fn reset(&mut self) {
        self.watch = None;
    }
}
