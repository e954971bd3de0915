//! Maps keys (policy ids, entity keys, IP set ids) to small integer handles,
//! so indexes and match tables store 4-byte ids instead of cloned strings.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
pub(crate) struct Interner<K> {
    fwd: HashMap<K, u32>,
    rev: IdMap<u32, K>,
    next: u32,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Interner {
            fwd: HashMap::new(),
            rev: IdMap::default(),
            next: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> Interner<K> {
    /// The handle of `k`, allocating one if needed.
    pub(crate) fn intern(&mut self, k: &K) -> u32 {
        if let Some(&id) = self.fwd.get(k) {
            return id;
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        self.fwd.insert(k.clone(), id);
        self.rev.insert(id, k.clone());
        id
    }

    pub(crate) fn get(&self, k: &K) -> Option<u32> {
        self.fwd.get(k).copied()
    }

    pub(crate) fn key(&self, id: u32) -> Option<&K> {
        self.rev.get(&id)
    }

    /// Forgets a handle; the caller guarantees nothing refers to it any more.
    pub(crate) fn release(&mut self, id: u32) {
        if let Some(k) = self.rev.remove(&id) {
            self.fwd.remove(&k);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.fwd.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_get_release() {
        let mut i = Interner::default();
        let a = i.intern(&"a".to_string());
        assert_eq!(i.intern(&"a".to_string()), a);
        let b = i.intern(&"b".to_string());
        assert_ne!(a, b);
        assert_eq!(i.key(b).map(String::as_str), Some("b"));
        i.release(a);
        assert_eq!(i.get(&"a".to_string()), None);
        assert_eq!(i.len(), 1);
    }
}

/// Hasher for maps keyed by our own integer handles (never chosen by
/// users, so collision attacks are not a concern): one multiply per key,
/// instead of SipHash. Maps keyed by user-supplied strings keep the default.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(SEED);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(SEED);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(SEED);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub(crate) type IdBuild = std::hash::BuildHasherDefault<IdHasher>;
/// A map keyed by handles.
pub(crate) type IdMap<K, V> = HashMap<K, V, IdBuild>;
/// A set of handles.
pub(crate) type IdSet<K> = std::collections::HashSet<K, IdBuild>;
