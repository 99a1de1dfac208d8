//! Repetitions and the median: how one number per row is obtained.

use std::time::Duration;

/// How many times each measurement runs.
#[derive(Clone, Copy, Debug)]
pub struct Reps {
    /// Untimed runs first, to fault in memory and fill the allocator's caches.
    pub warmup: usize,
    /// Timed runs; the median of them is reported.
    pub timed: usize,
}

impl Reps {
    /// `--quick`: the whole report in well under a minute on 2 cores.
    pub const QUICK: Reps = Reps {
        warmup: 1,
        timed: 5,
    };
    /// The default: more repetitions for a steadier median.
    pub const FULL: Reps = Reps {
        warmup: 3,
        timed: 21,
    };
}

/// Nanoseconds per operation over the timed repetitions of one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The fastest repetition.
    pub min: f64,
    /// The median repetition: the number the report shows.
    pub median: f64,
    /// The slowest repetition.
    pub max: f64,
}

impl Spread {
    /// The spread of `samples`, which must not be empty.
    pub fn of(samples: Vec<f64>) -> Spread {
        let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Spread {
            min,
            median: median(samples),
            max,
        }
    }
}

/// Nanoseconds per operation of `run`, which performs `ops` operations and
/// returns how long they took, over `reps`.
pub fn ns_per_op(reps: Reps, ops: u64, mut run: impl FnMut() -> Duration) -> Spread {
    interleaved(reps, 1, |_| run().as_nanos() as f64 / ops as f64).remove(0)
}

/// Runs `run(i)` for each of `n` contenders round-robin: `reps.warmup` rounds
/// untimed, then `reps.timed` rounds whose results (ns per op) are kept. Taking
/// turns spreads a slow phase of the machine over every contender instead of
/// letting it land on whichever one ran then.
pub fn interleaved(reps: Reps, n: usize, mut run: impl FnMut(usize) -> f64) -> Vec<Spread> {
    for _ in 0..reps.warmup {
        (0..n).for_each(|i| {
            run(i);
        });
    }
    let timed = reps.timed.max(1);
    let mut samples = vec![Vec::with_capacity(timed); n];
    for _ in 0..timed {
        for (i, s) in samples.iter_mut().enumerate() {
            s.push(run(i));
        }
    }
    samples.into_iter().map(Spread::of).collect()
}

/// The median of `samples` (the mean of the middle two for an even count).
pub fn median(mut samples: Vec<f64>) -> f64 {
    assert!(!samples.is_empty(), "median of no samples");
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn interleaving_takes_turns_and_keeps_only_timed_rounds() {
        let reps = Reps {
            warmup: 1,
            timed: 3,
        };
        let mut order = Vec::new();
        let spreads = interleaved(reps, 2, |i| {
            order.push(i);
            (order.len() * 10 + i) as f64
        });
        assert_eq!(order, [0, 1, 0, 1, 0, 1, 0, 1]);
        let expected = [(30.0, 50.0, 70.0), (41.0, 61.0, 81.0)];
        for (s, (min, median, max)) in spreads.iter().zip(expected) {
            assert_eq!((s.min, s.median, s.max), (min, median, max));
        }
    }
}
