//! The object stock batches page-counter traffic (S11, DESIGN.md §6): a
//! thread that frees and allocates objects of mixed sizes in one group goes
//! to the page counter about once per page's worth of net change, not once
//! per object, because the stock's budget keeps a page of room on either
//! side after each trip (the kernel's obj_stock has none and thrashes at its
//! page boundary: the Waiman Long and Shakeel Butt fixes).

#[global_allocator]
static A: memcg::MemcgAlloc = memcg::MemcgAlloc;

/// A churn of 100k replacements among 10k live objects of 16–256 bytes, in
/// a group through `MemcgAlloc`: the budget takes a random walk (a free
/// adds its object's bytes, an allocation takes the next object's). With
/// room on both sides after a trip the walk rarely reaches a boundary;
/// with the budget left at a page boundary it crosses back at once. The
/// counters are exact after, and the trips are a small fraction of the
/// operations.
#[test]
fn a_churn_of_mixed_sizes_rarely_goes_to_the_page_counter() {
    const LIVE: usize = 10_000;
    const OPS: usize = 100_000;
    let g = memcg::global().create("/stock-batching").unwrap();
    let mut rng = fastrand::Rng::with_seed(17);
    // The set's own vector and the sizes are made before entering: only
    // the objects are charged to the group.
    let sizes: Vec<usize> = (0..LIVE + OPS).map(|_| rng.usize(16..=256)).collect();
    let picks: Vec<usize> = (0..OPS).map(|_| rng.usize(..LIVE)).collect();
    let mut live: Vec<Vec<u8>> = Vec::with_capacity(LIVE);
    let trips = std::thread::scope(|s| {
        s.spawn(|| {
            let _in = g.enter().unwrap();
            live.extend(sizes[..LIVE].iter().map(|&n| vec![1u8; n]));
            let before = memcg::slab::stock_page_trips();
            for (i, &slot) in picks.iter().enumerate() {
                live[slot] = vec![2u8; sizes[LIVE + i]];
            }
            let trips = memcg::slab::stock_page_trips() - before;
            live.clear();
            trips
        })
        .join()
        .unwrap()
    });
    memcg::global().quiesce();
    let read = |f: &str| memcg::global().read("/stock-batching", f).unwrap();
    assert_eq!(read("memory.current"), "0\n");
    // 100k replacements: about 60 trips with room kept on both sides of the
    // budget, about 6,000 with the budget left at a page boundary.
    assert!(
        trips <= OPS / 500,
        "{trips} page-counter trips for {OPS} replacements"
    );
    drop(g);
    memcg::global().remove("/stock-batching").unwrap();
}
