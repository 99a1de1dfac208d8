//! Criterion benches of the raw workloads over the peers and memcg's own rows
//! (`memcg` and `memcg (global allocator)`, charged to a group, and their
//! `memcg-root` counterparts in no group).
//!
//! `cargo bench -p memcg-bench` runs them with criterion's statistics; the
//! report binary (`cargo run --release -p memcg-bench`) is the side-by-side
//! table. Both time the same workload functions, so they agree on what an
//! op is. `remote` and the workloads on the global allocator (`std` and the
//! mimalloc-bench ports) are left to the report: the first needs its two
//! threads pinned and a fixed amount of work per run, the others a process
//! per allocator.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use memcg_bench::{contenders, Workload};

/// Benchmarks `w` on every contender, each iteration being one op of `w`.
fn bench_workload(c: &mut Criterion, w: Workload) {
    let mut group = c.benchmark_group(w.name());
    for contender in contenders() {
        group.bench_function(BenchmarkId::from_parameter(contender.name()), |b| {
            // Timing is done by the workload itself, which leaves its setup
            // (churn's live set) out of the time.
            b.iter_custom(|iters| contender.run_raw(w, iters).expect("a raw workload"));
        });
    }
    group.finish();
}

fn single64(c: &mut Criterion) {
    bench_workload(c, Workload::Single64);
}

fn churn(c: &mut Criterion) {
    bench_workload(c, Workload::Churn);
}

criterion_group! {
    name = benches;
    // Short runs: 2 workloads x 8 rows stay under two minutes on 2 cores.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = single64, churn
}
criterion_main!(benches);
