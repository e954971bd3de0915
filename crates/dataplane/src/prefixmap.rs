//! A map keyed by prefix that costs no more per IPv4 entry than an IPv4
//! key: IPv4 and IPv6 prefixes in maps of their own (an `IpNet` is 18 bytes
//! whatever its family, an `Ipv4Net` 5), hashed with foldhash (randomly
//! seeded). Tables of 100,000 routes are IPv4, so this is most of their size.
//! (calico-bgp's RIB has the same map; the two crates share no dependency
//! it could live in.)

use std::collections::HashMap;

use foldhash::fast::RandomState;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub struct PrefixMap<V> {
    v4: HashMap<Ipv4Net, V, RandomState>,
    v6: HashMap<Ipv6Net, V, RandomState>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        PrefixMap {
            v4: HashMap::default(),
            v6: HashMap::default(),
        }
    }
}

impl<V> PrefixMap<V> {
    pub fn get(&self, k: &IpNet) -> Option<&V> {
        match k {
            IpNet::V4(n) => self.v4.get(n),
            IpNet::V6(n) => self.v6.get(n),
        }
    }

    pub fn get_mut(&mut self, k: &IpNet) -> Option<&mut V> {
        match k {
            IpNet::V4(n) => self.v4.get_mut(n),
            IpNet::V6(n) => self.v6.get_mut(n),
        }
    }

    pub fn remove(&mut self, k: &IpNet) -> Option<V> {
        match k {
            IpNet::V4(n) => self.v4.remove(n),
            IpNet::V6(n) => self.v6.remove(n),
        }
    }

    /// The value for `k`, made with `V::default()` if there is none.
    pub fn get_or_default(&mut self, k: IpNet) -> &mut V
    where
        V: Default,
    {
        match k {
            IpNet::V4(n) => self.v4.entry(n).or_default(),
            IpNet::V6(n) => self.v6.entry(n).or_default(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &V)> {
        let v4 = self.v4.iter().map(|(k, v)| (IpNet::V4(*k), v));
        let v6 = self.v6.iter().map(|(k, v)| (IpNet::V6(*k), v));
        v4.chain(v6)
    }

    pub fn keys(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.v4.values_mut().chain(self.v6.values_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families() {
        let mut m: PrefixMap<u32> = PrefixMap::default();
        let a: IpNet = "10.0.0.0/26".parse().unwrap();
        let b: IpNet = "fd00::/64".parse().unwrap();
        *m.get_or_default(a) += 1;
        *m.get_or_default(b) += 2;
        *m.get_mut(&b).unwrap() += 1;
        assert_eq!(m.get(&a), Some(&1));
        assert_eq!(m.get(&b), Some(&3));
        let mut keys: Vec<IpNet> = m.keys().collect();
        keys.sort();
        assert_eq!(keys, vec![a, b]);
        assert_eq!(m.remove(&a), Some(1));
        assert!(m.get(&a).is_none());
        assert_eq!(m.iter().count(), 1);
    }
}
