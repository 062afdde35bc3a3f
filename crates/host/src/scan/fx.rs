//! A small multiplicative hasher (the `FxHash` of rustc) for the scan's
//! maps and sets keyed by addresses, bus numbers and group numbers: a few
//! integers per key, where SipHash's protection against chosen keys buys
//! nothing (the keys come from the kernel's directory names) and costs
//! more than the rest of a lookup.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The odd constant of rustc's `FxHasher` (from the golden ratio).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Hashes word by word: rotate, xor, multiply.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word.get_mut(..chunk.len())
                .unwrap_or_default()
                .copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    /// The multiplication mixes upwards; hash tables index with the low
    /// bits, so the well-mixed high bits are rotated down.
    fn finish(&self) -> u64 {
        self.hash.rotate_left(26)
    }
}

/// Builds [`FxHasher`]s.
pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
/// A `HashMap` with [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
/// A `HashSet` with [`FxHasher`].
pub(crate) type FxHashSet<K> = HashSet<K, FxBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use qpci_types::PciAddress;

    #[test]
    fn addresses_spread_over_buckets() {
        let mut set = FxHashSet::default();
        let mut low = std::collections::BTreeSet::new();
        for bus in 0..=255u8 {
            for dev in 0..32u8 {
                let a: PciAddress = format!("0000:{bus:02x}:{dev:02x}.0").parse().unwrap();
                let mut h = FxHasher::default();
                std::hash::Hash::hash(&a, &mut h);
                low.insert(h.finish() & 0xfff);
                set.insert(a);
            }
        }
        assert_eq!(set.len(), 256 * 32);
        // 8192 keys into 4096 buckets: a decent hash fills most of them.
        assert!(low.len() > 3000, "{}", low.len());
    }
}
