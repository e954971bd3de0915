//! One leader among the driver's processes, as upstream's elector: the
//! leader holds the election key (`/calico/openstack/v2/<region>/
//! neutron_election`, value `<elector name>:<pid>`) under a lease; it keeps
//! the lease alive, and others take over when the key goes (the leader
//! stopped or its lease expired). Only the leader resyncs and turns agent
//! and endpoint status into Neutron's.

use std::sync::Arc;
use std::time::Duration;

use calico_datastore::{Datastore, Error as StoreError, LeaseId};

use crate::keys::{election_key, LEGACY_ELECTION_KEY};
use crate::region::Region;

/// Upstream's lease: the leader refreshes well within it.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

pub struct Elector {
    store: Arc<dyn Datastore>,
    key: String,
    id: String,
    ttl: Duration,
    lease: Option<LeaseId>,
}

impl Elector {
    /// `id` is upstream's `<elector name>:<pid>`.
    pub fn new(store: Arc<dyn Datastore>, region: &Region, id: String, ttl: Duration) -> Elector {
        Elector {
            store,
            key: election_key(region),
            id,
            ttl,
            lease: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current leader's id, if any.
    pub fn leader(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(&self.key)?
            .and_then(|kv| kv.value_str().map(str::to_string)))
    }

    /// One round: keep leading (refresh the lease, check the key is still
    /// ours) or try to become leader. Returns whether this elector leads.
    pub fn step(&mut self) -> Result<bool, StoreError> {
        if let Some(lease) = self.lease {
            if self.still_ours(lease)? {
                return Ok(true);
            }
            self.lease = None;
        }
        let lease = self.store.grant_lease(self.ttl)?;
        match self
            .store
            .create(&self.key, self.id.as_bytes(), Some(lease))
        {
            Ok(_) => {
                self.lease = Some(lease);
                // Older tools look here (upstream writes both keys).
                self.store
                    .put(LEGACY_ELECTION_KEY, self.id.as_bytes(), Some(lease))?;
                Ok(true)
            }
            Err(StoreError::AlreadyExists { .. }) => {
                let _ = self.store.revoke_lease(lease);
                Ok(false)
            }
            Err(e) => {
                let _ = self.store.revoke_lease(lease);
                Err(e)
            }
        }
    }

    fn still_ours(&self, lease: LeaseId) -> Result<bool, StoreError> {
        match self.store.keep_alive(lease) {
            Ok(()) => {}
            Err(StoreError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        Ok(self
            .store
            .get(&self.key)?
            .is_some_and(|kv| kv.lease == lease && kv.value == self.id.as_bytes()))
    }

    /// Steps down: the key is removed at once (with the lease), so another
    /// process takes over without waiting for the lease to expire.
    pub fn resign(&mut self) {
        if let Some(lease) = self.lease.take() {
            let _ = self.store.revoke_lease(lease);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<dyn Datastore>) {
        let dir = tempfile::tempdir().unwrap();
        let s = calico_datastore::LocalStore::open(dir.path().join("db")).unwrap();
        (dir, Arc::new(s))
    }

    #[test]
    fn one_leader_and_a_takeover_when_it_resigns() {
        let (_d, s) = store();
        let r = Region::none();
        let mut a = Elector::new(s.clone(), &r, "h1:1".into(), LEASE_TTL);
        let mut b = Elector::new(s.clone(), &r, "h2:2".into(), LEASE_TTL);
        assert!(a.step().unwrap());
        assert!(!b.step().unwrap());
        assert!(a.step().unwrap(), "the leader stays leader");
        assert!(!b.step().unwrap());
        assert_eq!(a.leader().unwrap().as_deref(), Some("h1:1"));
        let legacy = s.get(LEGACY_ELECTION_KEY).unwrap().unwrap();
        assert_eq!(legacy.value, b"h1:1");
        a.resign();
        assert!(b.step().unwrap(), "b takes over");
        assert!(!a.step().unwrap(), "a is now a follower");
        assert_eq!(b.leader().unwrap().as_deref(), Some("h2:2"));
    }

    #[test]
    fn a_leader_whose_key_was_taken_steps_down() {
        let (_d, s) = store();
        let r = Region::none();
        let mut a = Elector::new(s.clone(), &r, "h1:1".into(), LEASE_TTL);
        assert!(a.step().unwrap());
        let key = election_key(&r);
        s.delete(&key, None).unwrap();
        s.create(&key, b"other:9", None).unwrap();
        assert!(!a.step().unwrap());
    }

    #[test]
    fn an_expired_lease_hands_over() {
        let (_d, s) = store();
        let r = Region::none();
        let ttl = Duration::from_secs(1);
        let mut a = Elector::new(s.clone(), &r, "h1:1".into(), ttl);
        let mut b = Elector::new(s.clone(), &r, "h2:2".into(), ttl);
        assert!(a.step().unwrap());
        std::thread::sleep(Duration::from_millis(2200));
        assert!(b.step().unwrap(), "a stopped refreshing; b leads");
        assert!(!a.step().unwrap());
    }
}
