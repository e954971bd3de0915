//! An `NftBackend` wrapper that remembers the namespace's nftables
//! generation after its own transactions and listings. Every committed nft
//! transaction, by anyone, bumps the generation, so while it still equals
//! the one we left, nothing can have drifted and a drift check can skip the
//! (expensive: ~0.5 s per 1,000 endpoints) read-back of the table.

use std::io;

use super::backend::{ListedTable, NftBackend};
use crate::DataplaneError;

pub struct GenerationTracked<B> {
    inner: B,
    /// Reads the current generation (the kernel's, or a test's counter).
    probe: fn() -> io::Result<u32>,
    /// The generation at which the kernel held exactly what we last wrote or
    /// read; `None` if unknown.
    clean: Option<u32>,
}

impl<B: NftBackend> GenerationTracked<B> {
    /// Tracks the generation of the calling thread's network namespace.
    pub fn new(inner: B) -> Self {
        Self::with_probe(inner, super::generation::generation)
    }

    pub fn with_probe(inner: B, probe: fn() -> io::Result<u32>) -> Self {
        GenerationTracked {
            inner,
            probe,
            clean: None,
        }
    }

    /// True if nftables cannot have changed since our last write or read.
    pub fn unchanged(&self) -> bool {
        self.clean.is_some() && (self.probe)().ok() == self.clean
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: NftBackend> NftBackend for GenerationTracked<B> {
    fn apply(&mut self, script: &str) -> Result<(), DataplaneError> {
        let before = (self.probe)().ok();
        let res = self.inner.apply(script);
        let after = (self.probe)().ok();
        // One `nft -f` is one transaction: exactly one step means only ours.
        self.clean = match (before, after, &res) {
            (Some(b), Some(a), Ok(())) if a == b.wrapping_add(1) => Some(a),
            _ => None,
        };
        res
    }

    fn list_table(&mut self) -> Result<Option<ListedTable>, DataplaneError> {
        let before = (self.probe)().ok();
        let res = self.inner.list_table();
        let after = (self.probe)().ok();
        self.clean = match (before, after, &res) {
            (Some(b), Some(a), Ok(_)) if a == b => Some(a),
            _ => None,
        };
        res
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::nft::FakeNft;

    static GEN: AtomicU32 = AtomicU32::new(7);

    fn probe() -> io::Result<u32> {
        Ok(GEN.load(Ordering::SeqCst))
    }

    /// A fake whose transactions bump the test's generation counter.
    struct Bumping(FakeNft);

    impl NftBackend for Bumping {
        fn apply(&mut self, script: &str) -> Result<(), DataplaneError> {
            GEN.fetch_add(1, Ordering::SeqCst);
            self.0.apply(script)
        }
        fn list_table(&mut self) -> Result<Option<ListedTable>, DataplaneError> {
            self.0.list_table()
        }
    }

    #[test]
    fn unchanged_only_while_nobody_else_committed() {
        let mut t = GenerationTracked::with_probe(Bumping(FakeNft::new()), probe);
        assert!(!t.unchanged(), "unknown at first");
        t.apply("add table inet calico\n").unwrap();
        assert!(t.unchanged(), "our own transaction leaves it clean");
        GEN.fetch_add(1, Ordering::SeqCst); // someone else's transaction
        assert!(!t.unchanged());
        t.list_table().unwrap();
        assert!(t.unchanged(), "a read-back makes it clean again");
    }
}
