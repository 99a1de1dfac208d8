//! Reclaim stays proportionate (issue 12): a charge at a group's limit
//! reclaims one page and must not walk the LRU. Each iteration charges one
//! file page to a group at `memory.max` holding N file pages, so reclaim
//! takes the oldest one; N = 1,000, 10,000 and 100,000 pages should cost
//! about the same per charge. Two sibling groups, one protected by
//! memory.low, so the protection arithmetic runs on every round.
//!
//! `cargo bench -p memcg-bench --bench reclaim`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use memcg::{Hierarchy, PageKind, UserPage};
use std::collections::VecDeque;

fn at_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("charge at the limit");
    for n in [1_000usize, 10_000, 100_000] {
        let h = Hierarchy::new();
        let parent = h.create("/p").unwrap();
        let busy = h.create("/p/busy").unwrap();
        let kept = h.create("/p/kept").unwrap();
        kept.write("memory.low", &format!("{}", 64 * 4096)).unwrap();
        {
            let _in = kept.enter().unwrap();
            let pages: Vec<_> = (0..64)
                .map(|_| UserPage::charge(PageKind::File).unwrap())
                .collect();
            std::mem::forget(pages);
        }
        parent
            .write("memory.max", &format!("{}", (n + 64) * 4096))
            .unwrap();
        let _in = busy.enter().unwrap();
        let mut live: VecDeque<UserPage> = (0..n)
            .map(|_| UserPage::charge(PageKind::File).unwrap())
            .collect();
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                live.push_back(UserPage::charge(PageKind::File).unwrap());
                if live.len() > n {
                    // Reclaimed (or not): drop the oldest handle.
                    live.pop_front();
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = at_limit
}
criterion_main!(benches);
