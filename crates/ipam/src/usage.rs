//! What `calicoctl ipam show` reports (lcg `GetUtilization`,
//! `GetAssignmentAttributes`; ctl `commands/ipam/show.go`): per-pool and
//! per-block usage, borrowed addresses, one address's attributes.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::block::{
    num_addresses, AllocationAttribute, ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, ATTR_TYPE,
};
use crate::error::Result;
use crate::Ipam;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockUsage {
    pub cidr: IpNet,
    pub capacity: usize,
    /// Addresses not free (upstream: capacity minus the free list).
    pub in_use: usize,
    pub affinity: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// Pool name; `None` for the blocks no pool contains (orphaned).
    pub name: Option<String>,
    pub cidr: Option<IpNet>,
    /// Addresses in the pool (0 for the orphaned group).
    pub capacity: u128,
    pub blocks: Vec<BlockUsage>,
}

impl PoolUsage {
    pub fn in_use(&self) -> u128 {
        self.blocks.iter().map(|b| b.in_use as u128).sum()
    }
}

/// An address allocated for a node other than the block's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BorrowedIp {
    pub addr: IpAddr,
    pub borrowing_node: String,
    pub block: IpNet,
    /// The node the block is affine to ("" if none).
    pub block_owner: String,
    /// `pod`, or the `type` attribute (e.g. `vxlanTunnelAddress`).
    pub alloc_type: String,
    /// `namespace/pod` for pods.
    pub allocated_to: String,
}

impl Ipam {
    /// Usage of every pool (in name order), then of the blocks no pool
    /// contains. Blocks appear in key order, as upstream lists them.
    pub fn utilization(&self) -> Result<Vec<PoolUsage>> {
        let pools = self.pools()?;
        let mut out: Vec<PoolUsage> = pools
            .iter()
            .map(|p| PoolUsage {
                name: Some(p.name.clone()),
                cidr: Some(p.net),
                capacity: num_addresses(&p.net),
                blocks: Vec::new(),
            })
            .collect();
        let mut orphans = PoolUsage {
            name: None,
            cidr: None,
            capacity: 0,
            blocks: Vec::new(),
        };
        for b in self.blocks(0)? {
            let b = b.value;
            let u = BlockUsage {
                cidr: b.cidr,
                capacity: b.num_addresses(),
                in_use: b.num_addresses() - b.unallocated.len(),
                affinity: b.affinity.clone(),
            };
            match out
                .iter_mut()
                .find(|p| p.cidr.is_some_and(|c| c.contains(&b.cidr.network())))
            {
                Some(p) => p.blocks.push(u),
                None => orphans.blocks.push(u),
            }
        }
        if !orphans.blocks.is_empty() {
            out.push(orphans);
        }
        Ok(out)
    }

    /// Borrowed addresses, and how many allocations carry no `node`
    /// attribute (so cannot be classified).
    pub fn borrowed_ips(&self) -> Result<(Vec<BorrowedIp>, usize)> {
        let mut out = Vec::new();
        let mut unclassified = 0;
        for b in self.blocks(0)? {
            let b = b.value;
            let owner = b
                .affinity
                .as_deref()
                .map(|a| a.split_once(':').map_or(a, |(_, h)| h).to_string())
                .unwrap_or_default();
            for (_, ip, attr) in b.allocated() {
                let Some(node) = attr.secondary.get(ATTR_NODE) else {
                    unclassified += 1;
                    continue;
                };
                if *node == owner {
                    continue;
                }
                let (alloc_type, allocated_to) = if let Some(pod) = attr.secondary.get(ATTR_POD) {
                    let ns = attr
                        .secondary
                        .get(ATTR_NAMESPACE)
                        .map_or("", String::as_str);
                    (ATTR_POD.to_string(), format!("{ns}/{pod}"))
                } else {
                    (
                        attr.secondary.get(ATTR_TYPE).cloned().unwrap_or_default(),
                        String::new(),
                    )
                };
                out.push(BorrowedIp {
                    addr: ip,
                    borrowing_node: node.clone(),
                    block: b.cidr,
                    block_owner: owner.clone(),
                    alloc_type,
                    allocated_to,
                });
            }
        }
        Ok((out, unclassified))
    }

    /// The handle and attributes of an allocated address; `None` if it is
    /// not allocated.
    pub fn assignment_attributes(&self, ip: IpAddr) -> Result<Option<AllocationAttribute>> {
        let pools = self.pools()?;
        let Some(cidr) = self.find_block_for(ip, &pools)? else {
            return Ok(None);
        };
        Ok(self
            .get_block(&cidr)?
            .and_then(|b| b.value.attributes_for(ip).cloned()))
    }
}
