//! S10 in a process of its own: while no non-root group exists, accounting
//! is off altogether (the seed's static key), and it switches on and off
//! with the first group's context. A separate test binary, because the key is
//! process-wide and other tests create groups concurrently.

use memcg::{accounting_enabled, Hierarchy, KmemPages};

/// S10: the key follows the existence of contexts, not of groups alone.
#[test]
fn accounting_is_off_until_a_group_exists_and_after_its_context_dies() {
    assert!(!accounting_enabled(), "no group yet");
    let h = Hierarchy::new();
    assert!(!accounting_enabled(), "the root alone accounts nothing");
    let root_buffer = KmemPages::alloc(4096).unwrap();
    let a = h.create("/a").unwrap();
    assert!(accounting_enabled());
    let buffer = KmemPages::alloc_for(&a, 4096).unwrap();
    drop(a);
    h.remove("/a").unwrap();
    h.quiesce();
    assert!(accounting_enabled(), "a's context lives with its buffer");
    drop(buffer);
    h.quiesce();
    assert!(!accounting_enabled(), "the last context is gone");
    drop(root_buffer);
    assert_eq!(h.read("/", "memory.current").unwrap(), "0\n");
}
