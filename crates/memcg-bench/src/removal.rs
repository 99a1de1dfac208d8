//! Removal time of a group by its live objects (DESIGN.md §7, S8).
//!
//! A group is filled with 64-byte kmalloc objects by a thread that then
//! leaves it, so the thread's slabs are back on the cache's lists as they
//! would be after a job ends; then only [`Hierarchy::remove`] is timed. The
//! objects stay alive across the removal (they are what S8 is about) and are
//! freed afterwards, untimed.
//!
//! A removal takes microseconds, so the state of the CPU caches matters as
//! much as the work: filling the live case's group writes 64 MB, which
//! leaves its removal cache-cold and the others' warm. Every removal is
//! preceded by an untimed removal of a scratch group (the shared removal
//! path warm), and measured in two conditions ([`Caches`]):
//! - *as left*: the caches as the fill left them, so the live case is
//!   measured colder than the others (a program removing a group right
//!   after its job ran);
//! - *equally cold*: a 64 MB buffer is written first in every case, so the
//!   cases differ only in what their group holds.
//!
//! Four cases, measured in turns like the raw workloads:
//! - [`Case::Empty`]: a group that allocated nothing (no cache to kill);
//! - [`Case::Few`]: a group with [`FEW_OBJECTS`] live objects, so removal
//!   kills one cache, as in the next case, with a thousandth of its objects;
//! - [`Case::Live`]: a group with [`LIVE_OBJECTS`] live objects;
//! - [`Case::Fragmented`]: a group with [`LIVE_OBJECTS`] live objects whose
//!   slabs are fragmented: it allocated [`FRAGMENTED_FREED`] more, then
//!   freed every other object of the first `2 * FRAGMENTED_FREED` it
//!   allocated, so about a fifth of its slabs are half free (partial) when
//!   it is removed. DESIGN.md §7's "removal of a group with 1M live objects,
//!   its slabs fragmented, vs with none" is this case over [`Case::Empty`].
//!
//! The counts of the first three fill whole slabs of 64 objects, so the
//! cache has only full slabs when it is killed; the fragmented case adds the
//! partial slabs a removal has to look at (S8 bounds the work by them).

use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Instant;

use memcg::{Hierarchy, Leftovers, SlabCache};

use crate::measure::{interleaved, Reps, Spread};

/// Live objects in [`Case::Live`].
pub const LIVE_OBJECTS: usize = 1_000_000;
/// Live objects in [`Case::Few`].
pub const FEW_OBJECTS: usize = 1_024;
/// Objects [`Case::Fragmented`] allocates beyond [`LIVE_OBJECTS`] and frees
/// again, every other one of the first `2 * FRAGMENTED_FREED`.
pub const FRAGMENTED_FREED: usize = LIVE_OBJECTS / 8;
/// The objects' size.
pub const OBJECT_SIZE: usize = 64;

/// What the removed group holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Nothing ever allocated.
    Empty,
    /// [`FEW_OBJECTS`] live objects.
    Few,
    /// [`LIVE_OBJECTS`] live objects.
    Live,
    /// [`LIVE_OBJECTS`] live objects, some of their slabs half free.
    Fragmented,
}

impl Case {
    /// All cases, in report order.
    pub const ALL: [Case; 4] = [Case::Empty, Case::Few, Case::Live, Case::Fragmented];

    /// The label in the report.
    pub fn label(self) -> String {
        match self {
            Case::Empty => "0 live objects (nothing allocated)".to_owned(),
            Case::Few => format!("{FEW_OBJECTS} live {OBJECT_SIZE}-byte objects"),
            Case::Live => format!("{LIVE_OBJECTS} live {OBJECT_SIZE}-byte objects"),
            Case::Fragmented => format!(
                "{LIVE_OBJECTS} live {OBJECT_SIZE}-byte objects, fragmented \
                 ({FRAGMENTED_FREED} freed among the first {})",
                2 * FRAGMENTED_FREED
            ),
        }
    }

    /// The objects the group keeps alive, and how many more it allocates
    /// and frees to fragment its slabs.
    fn objects(self) -> (usize, usize) {
        match self {
            Case::Empty => (0, 0),
            Case::Few => (FEW_OBJECTS, 0),
            Case::Live => (LIVE_OBJECTS, 0),
            Case::Fragmented => (LIVE_OBJECTS, FRAGMENTED_FREED),
        }
    }
}

/// Allocates `live + freed` objects from `cache` on the calling thread, then
/// frees every other one of the first `2 * freed`, and returns the `live`
/// objects left. The slabs of the first `2 * freed` objects, allocated one
/// after the other, are then half free.
pub fn fill(cache: SlabCache, live: usize, freed: usize) -> Vec<NonNull<u8>> {
    let mut objects: Vec<NonNull<u8>> = (0..live + freed)
        .map(|_| cache.alloc_raw().expect("no limit is set"))
        .collect();
    let mut i = 0;
    objects.retain(|&obj| {
        i += 1;
        let keep = i > 2 * freed || i % 2 == 0;
        if !keep {
            // SAFETY: allocated above by alloc_raw, freed once, dropped from
            // the list.
            unsafe { SlabCache::free_raw(obj) };
        }
        keep
    });
    objects
}

/// The state of the CPU caches a removal is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caches {
    /// As the group's fill left them.
    AsLeft,
    /// Evicted by writing as many bytes as the biggest fill, in every case.
    EquallyCold,
}

impl Caches {
    /// Both conditions, in report order.
    pub const ALL: [Caches; 2] = [Caches::AsLeft, Caches::EquallyCold];

    /// The label in the report.
    pub fn label(self) -> &'static str {
        match self {
            Caches::AsLeft => "as the fill left them",
            Caches::EquallyCold => "equally cold",
        }
    }
}

/// The removal time of one case in one condition.
#[derive(Clone, Copy, Debug)]
pub struct Removal {
    /// What the group held.
    pub case: Case,
    /// The CPU caches' state.
    pub caches: Caches,
    /// Microseconds `remove` took, over the timed repetitions.
    pub micros: Spread,
    /// [`Hierarchy::last_removal_slabs`] after the last repetition.
    pub slabs_looked_at: usize,
    /// [`Hierarchy::leftovers`] just after the last repetition's removal,
    /// while the objects still live: what the removed group pins.
    pub leftovers: Leftovers,
}

/// Repetitions of the removal measurement for a report run with `reps`: a
/// removal takes microseconds, so one sample is noisy; more of them are cheap
/// next to filling the group.
pub fn removal_reps(reps: Reps) -> Reps {
    Reps {
        warmup: reps.warmup,
        timed: reps.timed * 4 + 1,
    }
}

/// Measures every [`Case`] in every [`Caches`] condition in turns, `reps`
/// times each, on one hierarchy.
pub fn measure(reps: Reps) -> Vec<Removal> {
    let h = Hierarchy::new();
    let mut sweep = vec![0u8; LIVE_OBJECTS * OBJECT_SIZE];
    let cache = SlabCache::kmalloc(OBJECT_SIZE).expect("a kmalloc size");
    let runs: Vec<(Caches, Case)> = Caches::ALL
        .into_iter()
        .flat_map(|c| Case::ALL.map(|case| (c, case)))
        .collect();
    let mut last = vec![Once::default(); runs.len()];
    let spreads = interleaved(reps, runs.len(), |i| {
        let (caches, case) = runs[i];
        let sweep = (caches == Caches::EquallyCold).then_some(&mut sweep[..]);
        last[i] = remove_once(&h, cache, case, sweep);
        last[i].micros
    });
    runs.into_iter()
        .zip(spreads)
        .zip(last)
        .map(|(((caches, case), micros), once)| Removal {
            case,
            caches,
            micros,
            slabs_looked_at: once.slabs_looked_at,
            leftovers: once.leftovers,
        })
        .collect()
}

/// One removal.
#[derive(Clone, Copy, Debug, Default)]
struct Once {
    micros: f64,
    slabs_looked_at: usize,
    leftovers: Leftovers,
}

/// Fills a fresh group as `case` says, removes it, and returns what the
/// removal took and left. With a `sweep` buffer, writes it first.
fn remove_once(h: &Hierarchy, cache: SlabCache, case: Case, sweep: Option<&mut [u8]>) -> Once {
    const PATH: &str = "/removed";
    const WARM: &str = "/warm-up";
    let objects: Vec<NonNull<u8>> = {
        let group = h.create(PATH).expect("the previous repetition removed it");
        let _in = group.enter().expect("a live group");
        let (live, freed) = case.objects();
        fill(cache, live, freed)
        // The guard drops first: the thread is back in the root and its
        // slabs are on the cache's lists. Then the handle drops, so the
        // removal below frees the group itself, as S1 says it does.
    };
    // Deferred work left by the previous repetition runs now, not in the
    // timed removal.
    h.quiesce();
    // See the module doc: caches cold in every case, if asked; then the
    // shared removal path warm.
    if let Some(sweep) = sweep {
        for line in sweep.chunks_mut(64) {
            line[0] = line[0].wrapping_add(1);
        }
        black_box(sweep);
    }
    h.create(WARM).expect("removed by the previous repetition");
    h.remove(WARM).expect("no tasks, no children");

    let start = Instant::now();
    h.remove(black_box(PATH)).expect("no tasks, no children");
    let took = start.elapsed();
    let slabs_looked_at = h.last_removal_slabs();
    let leftovers = h.leftovers();

    for &obj in &objects {
        // SAFETY: allocated above by alloc_raw, freed once.
        unsafe { SlabCache::free_raw(obj) };
    }
    h.quiesce();
    Once {
        micros: took.as_nanos() as f64 / 1e3,
        slabs_looked_at,
        leftovers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_is_measured_and_the_group_is_gone() {
        let h = Hierarchy::new();
        let cache = SlabCache::kmalloc(OBJECT_SIZE).unwrap();
        let mut sweep = vec![0u8; 1 << 20];
        let empty = remove_once(&h, cache, Case::Empty, Some(&mut sweep));
        assert_eq!(empty.leftovers.dead_contexts, 0, "nothing was left alive");
        let few = remove_once(&h, cache, Case::Few, None);
        assert_eq!(
            few.leftovers.dead_contexts, 1,
            "the live objects pin the context"
        );
        assert_eq!(few.slabs_looked_at, 0, "only full slabs: none looked at");
        assert!(h.get("/removed").is_err());
        assert_eq!(
            h.live_caches(),
            0,
            "freeing the objects destroyed the cache"
        );
    }

    #[test]
    fn a_fragmented_fill_keeps_its_live_objects_and_frees_the_rest() {
        let cache = SlabCache::kmalloc(OBJECT_SIZE).unwrap();
        let h = Hierarchy::new();
        let g = h.create("/frag").unwrap();
        let objects = {
            let _in = g.enter().unwrap();
            fill(cache, 1000, 300)
        };
        assert_eq!(objects.len(), 1000);
        let mut sorted: Vec<_> = objects.iter().map(|p| p.as_ptr() as usize).collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000, "every live object is distinct");
        drop(g);
        h.remove("/frag").unwrap();
        assert_eq!(
            h.last_removal_slabs(),
            0,
            "shared slabs (S11): removal looks at no slab, partial ones included"
        );
        for obj in objects {
            // SAFETY: live objects from fill, freed once.
            unsafe { SlabCache::free_raw(obj) };
        }
        h.quiesce();
        assert_eq!(h.live_caches(), 0);
    }
}
