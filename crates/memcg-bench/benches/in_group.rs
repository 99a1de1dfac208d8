//! What binding a task to a group costs per poll (S12): a poll of a future
//! wrapped in `in_group`, against the same poll unwrapped, on a thread in
//! the root and with `MemcgAlloc` as the global allocator. The futures
//! allocate and free one 64-byte object per poll, charged to the group
//! when bound, so the bound row also pays for switching the thread's
//! object stock to the group and handing it back at the end of the poll.
//!
//! `cargo bench -p memcg-bench --bench in_group`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use memcg::FutureExt;

#[global_allocator]
static A: memcg::MemcgAlloc = memcg::MemcgAlloc;

/// A future that allocates and frees a 64-byte object at each poll and is
/// never ready.
struct Alloc64;

impl Future for Alloc64 {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        drop(black_box(Box::new([0u8; 64])));
        Poll::Pending
    }
}

fn polls(c: &mut Criterion) {
    let h = memcg::global();
    let g = h.create("/bench-in-group").unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("poll");
    group.bench_function("plain (root)", |b| {
        let mut f = pin!(Alloc64);
        b.iter(|| black_box(f.as_mut().poll(&mut cx)));
    });
    group.bench_function("plain (thread entered in the group)", |b| {
        let _in_g = g.enter().unwrap();
        let mut f = pin!(Alloc64);
        b.iter(|| black_box(f.as_mut().poll(&mut cx)));
    });
    group.bench_function("in_group", |b| {
        let mut f = pin!(Alloc64.in_group(g.clone()));
        b.iter(|| black_box(f.as_mut().poll(&mut cx)));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = polls
}
criterion_main!(benches);
