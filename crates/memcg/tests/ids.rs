//! S10: group ids (`kmemcg_id`) are recycled. A binary of its own: ids are
//! process-wide (slab caches index their per-group slots by id), so other
//! tests running in parallel would take the freed id first.

use memcg::Hierarchy;

/// S10: a removed group's id goes to the next group created, lowest first.
#[test]
fn group_ids_are_recycled_lowest_first() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let b = h.create("/b").unwrap();
    assert_ne!(a.id(), b.id());
    let (a_id, b_id) = (a.id(), b.id());
    h.remove("/b").unwrap();
    h.remove("/a").unwrap();
    assert_eq!(h.create("/c").unwrap().id(), a_id.min(b_id));
    assert_eq!(h.create("/d").unwrap().id(), a_id.max(b_id));
    // A removed group keeps its id while a handle holds it, but the id is
    // free for new groups already.
    assert_eq!(a.id(), a_id);
}
