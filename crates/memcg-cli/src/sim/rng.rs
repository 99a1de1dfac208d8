//! A small seeded random number generator (SplitMix64), so that a run under
//! `--seed N` makes the same choices on every machine and every build.
//!
//! Each job thread gets a stream of its own, derived from the seed, the round
//! and the thread's index: what it allocates and keeps does not depend on how
//! the threads interleave.

/// SplitMix64: one 64-bit state, full period, good enough for workloads.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// An independent stream for the parts `keys` of this run (a round, a
    /// thread), whatever was drawn from `self` before.
    pub(crate) fn derive(seed: u64, keys: &[u64]) -> Rng {
        let mut state = seed;
        for &k in keys {
            state = Rng(state ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64();
        }
        Rng(state)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `lo..=hi` (`lo <= hi`).
    pub(crate) fn between(&mut self, lo: usize, hi: usize) -> usize {
        let span = (hi - lo) as u64 + 1;
        // Multiply-shift: the bias is below 2^-32 for spans this small.
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<u64> = {
            let mut r = Rng::derive(7, &[]);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::derive(7, &[]);
        assert!(a.iter().all(|&x| x == r.next_u64()));
        assert_ne!(
            Rng::derive(7, &[1, 0]).next_u64(),
            Rng::derive(7, &[0, 1]).next_u64()
        );
    }

    #[test]
    fn between_stays_in_range() {
        let mut r = Rng::derive(1, &[]);
        for _ in 0..1000 {
            let x = r.between(3, 5);
            assert!((3..=5).contains(&x));
        }
        assert_eq!(r.between(4, 4), 4);
    }
}
