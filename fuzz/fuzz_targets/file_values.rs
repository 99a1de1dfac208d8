//! Interface-file values on arbitrary bytes (DESIGN.md §4, §8): every file
//! of a fresh group, and of the root, is written the value. A refused write
//! changes nothing (every file reads as before); a limit that is neither
//! `max` nor a SIZE that fits in 64 bits is `invalid`; an accepted limit
//! reads back as whole pages (or `max`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use memcg::{ErrorKind, Group, Hierarchy, PAGE_SIZE};

/// Every file a group may have, writable or not, and one that is not a file.
const FILES: [&str; 14] = [
    "memory.current",
    "memory.min",
    "memory.low",
    "memory.max",
    "memory.high",
    "memory.peak",
    "memory.reclaim",
    "memory.events",
    "memory.events.local",
    "memory.stat",
    "memory.pressure",
    "cgroup.stat",
    "cgroup.procs",
    "memory.bogus",
];

/// What every file of `group` reads (errors included), in [`FILES`] order.
fn snapshot(group: &Group) -> Vec<Result<String, memcg::Error>> {
    FILES
        .iter()
        .filter(|&&f| f != "memory.pressure") // stall times move on their own
        .map(|f| group.read(f))
        .collect()
}

fn check(group: &Group, value: &str) {
    let is_limit = |f: &str| {
        matches!(
            f,
            "memory.max" | "memory.high" | "memory.min" | "memory.low"
        )
    };
    for file in FILES {
        let before = snapshot(group);
        match group.write(file, value) {
            Ok(()) => {
                if is_limit(file) {
                    let read = group.read(file).expect("a written limit reads");
                    let trimmed = value.trim();
                    let bytes = memcg::parse_size(trimmed);
                    assert!(
                        trimmed == "max" || bytes.is_some(),
                        "{file}: {value:?} was accepted"
                    );
                    if read != "max\n" {
                        let pages = bytes.expect("not max") / PAGE_SIZE as u64;
                        assert_eq!(read, format!("{}\n", pages * PAGE_SIZE as u64), "{file}");
                    }
                }
            }
            Err(error) => {
                assert_eq!(
                    snapshot(group),
                    before,
                    "{file}: refused {value:?} but changed state"
                );
                let trimmed = value.trim();
                if is_limit(file)
                    && !group.path().eq("/")
                    && group.read(file).is_ok()
                    && trimmed != "max"
                    && memcg::parse_size(trimmed).is_none()
                {
                    assert_eq!(
                        error.kind(),
                        ErrorKind::Invalid,
                        "{file}: {value:?}: {error}"
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let hierarchy = Hierarchy::new();
    let group = hierarchy
        .create("/f")
        .expect("a fresh hierarchy creates /f");
    check(&group, value);
    check(&hierarchy.root(), value);
});
