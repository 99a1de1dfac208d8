//! S12, the default group, with a real `#[global_allocator]`. The default
//! is process-wide (one allocation charges one group), so this binary holds
//! one test: every thread of the harness follows the default while it is
//! set.

use memcg::{global, ErrorKind, Group, MemcgAlloc};
use std::sync::mpsc;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

/// A block of whole pages, charged exactly (page-level kmem, no slab slack).
const BLOCK: usize = 128 * 1024;

fn kmem(g: &Group) -> u64 {
    global().quiesce();
    g.read("memory.stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("kmem ")?.parse().ok())
        .unwrap()
}

fn current(g: &Group) -> u64 {
    global().quiesce();
    g.read("memory.current").unwrap().trim().parse().unwrap()
}

fn block() -> Vec<u8> {
    vec![7; BLOCK]
}

/// A thread of `std::thread::spawn` (a library's pool we do not control)
/// that allocates a block and reports the group it charges.
fn std_thread_block() -> (String, Vec<u8>) {
    std::thread::spawn(|| {
        let v = block();
        memcg::drain_stocks();
        (global().current_group().path(), v)
    })
    .join()
    .unwrap()
}

#[test]
fn never_attached_threads_and_their_children_charge_the_default_group() {
    let h = global();
    let pool = h.create("/pool").unwrap();
    let other = h.create("/other").unwrap();
    assert_eq!(h.default_group().path(), "/");

    // Before any default: a never-attached thread charges the root.
    let (path, root_block) = std_thread_block();
    assert_eq!(path, "/");
    assert_eq!(kmem(&pool), 0);

    h.set_default_group(Some(&pool)).unwrap();
    assert_eq!(h.default_group().path(), "/pool");
    // This (never attached) thread follows at once when it calls in.
    assert_eq!(h.current_group().path(), "/pool");

    // A plain std thread, and the thread it starts with std's spawn, charge
    // the default.
    let (path, b1) = std_thread_block();
    assert_eq!(path, "/pool");
    assert_eq!(kmem(&pool), BLOCK as u64);
    let (path, b2) = std::thread::spawn(std_thread_block).join().unwrap();
    assert_eq!(path, "/pool");
    assert_eq!(kmem(&pool), 2 * BLOCK as u64);

    // memcg::spawn from a never-attached thread follows the default too.
    let b3 = std::thread::spawn(|| memcg::spawn(block).join().unwrap())
        .join()
        .unwrap();
    assert_eq!(kmem(&pool), 3 * BLOCK as u64);

    // A thread that attached elsewhere, or detached, does not follow it;
    // leaving an `enter` scope returns to following it.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn({
        let other = other.clone();
        move || {
            {
                let _in_other = other.enter().unwrap();
                tx.send(("entered", global().current_group().path(), block()))
                    .unwrap();
            }
            tx.send(("left", global().current_group().path(), block()))
                .unwrap();
            memcg::detach();
            tx.send(("detached", global().current_group().path(), block()))
                .unwrap();
            memcg::drain_stocks();
        }
    })
    .join()
    .unwrap();
    let sent: Vec<_> = rx.iter().collect();
    let places: Vec<(&str, &str)> = sent.iter().map(|(w, p, _)| (*w, p.as_str())).collect();
    assert_eq!(
        places,
        [("entered", "/other"), ("left", "/pool"), ("detached", "/")]
    );
    assert_eq!(kmem(&other), BLOCK as u64);
    assert_eq!(kmem(&pool), 4 * BLOCK as u64);

    // A thread that was running before the default changed follows the
    // change at its next slow path (a large block is one).
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let early = std::thread::spawn(move || {
        while go_rx.recv().is_ok() {
            done_tx.send(block()).unwrap();
        }
    });
    go_tx.send(()).unwrap();
    let e1 = done_rx.recv().unwrap();
    assert_eq!(kmem(&pool), 5 * BLOCK as u64);
    h.set_default_group(Some(&other)).unwrap();
    go_tx.send(()).unwrap();
    let e2 = done_rx.recv().unwrap();
    assert_eq!(kmem(&other), 2 * BLOCK as u64);
    assert_eq!(kmem(&pool), 5 * BLOCK as u64);
    drop(go_tx);
    early.join().unwrap();

    // The default group cannot be removed; another hierarchy cannot set
    // one while this one has one; a removed group cannot become it.
    assert_eq!(h.remove("/other").unwrap_err().kind(), ErrorKind::Busy);
    let h2 = memcg::Hierarchy::new();
    let g2 = h2.create("/x").unwrap();
    assert_eq!(
        h2.set_default_group(Some(&g2)).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(
        h.set_default_group(Some(&g2)).unwrap_err().kind(),
        ErrorKind::Invalid,
        "a group of another hierarchy"
    );
    let gone = h.create("/gone").unwrap();
    h.remove("/gone").unwrap();
    assert_eq!(
        h.set_default_group(Some(&gone)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        h.default_group().path(),
        "/other",
        "failed calls changed nothing"
    );

    // Back to the root: new threads charge nothing.
    h.set_default_group(None).unwrap();
    let (path, after) = std_thread_block();
    assert_eq!(path, "/");
    drop(after);

    // Frees from any thread uncharge the owners: everything returns to 0.
    drop((root_block, b1, b2, b3, sent, e1, e2));
    assert_eq!(kmem(&pool), 0);
    assert_eq!(kmem(&other), 0);
    // This thread followed the default while it was /pool and /other: what
    // it made then (harness and channel bookkeeping) may still be live, so
    // their remaining small objects are only bounded.
    assert!(current(&pool) < 64 << 10, "{}", current(&pool));
    assert!(current(&other) < 64 << 10, "{}", current(&other));
    h.remove("/other").unwrap();
    h.remove("/pool").unwrap();

    // Dropping a hierarchy whose group is the default clears the default.
    let h3 = memcg::Hierarchy::new();
    let g3 = h3.create("/d").unwrap();
    h3.set_default_group(Some(&g3)).unwrap();
    drop((g3, h3));
    assert_eq!(h.default_group().path(), "/");
    h2.set_default_group(Some(&g2)).unwrap();
    h2.set_default_group(None).unwrap();
}
