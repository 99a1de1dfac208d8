//! Pinning the `remote` workload's two threads to two different cores.
//!
//! Left to the scheduler, the producer and the consumer sometimes share a core
//! (then they take turns and the frees are not remote at all) and sometimes
//! run on two (then every handed-over object crosses caches). The two differ
//! by up to 10x for some allocators, so an unpinned median depends on luck.
//! Pinning measures the case the workload is about: two threads running at
//! once, one allocating and one freeing.

use std::mem::size_of;

use libc::{cpu_set_t, CPU_ISSET, CPU_SET, CPU_SETSIZE};

/// The CPUs a `cpu_set_t` can name: 1024 with glibc.
const CPUS: usize = CPU_SETSIZE as usize;

/// An empty CPU set.
fn empty_set() -> cpu_set_t {
    // SAFETY: a `cpu_set_t` is an array of integers; all zeros is the
    // empty set (what `CPU_ZERO` would write).
    unsafe { std::mem::zeroed() }
}

/// The first two cores this process may run on, if it may run on two.
pub fn two_cpus() -> Option<[usize; 2]> {
    let mut set = empty_set();
    // SAFETY: `set` is a writable `cpu_set_t` of the size we pass; pid 0 is
    // the calling thread.
    if unsafe { libc::sched_getaffinity(0, size_of::<cpu_set_t>(), &mut set) } != 0 {
        return None;
    }
    // SAFETY: `CPU_ISSET` reads bit `cpu` of `set`, below `CPUS`.
    let mut cpus = (0..CPUS).filter(|&cpu| unsafe { CPU_ISSET(cpu, &set) });
    Some([cpus.next()?, cpus.next()?])
}

/// Pins the calling thread to `cpu`; false if the kernel refused.
pub fn pin_current_thread(cpu: usize) -> bool {
    if cpu >= CPUS {
        return false;
    }
    let mut set = empty_set();
    // SAFETY: `CPU_SET` writes bit `cpu` of `set`, below `CPUS` (checked
    // above).
    unsafe { CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a readable `cpu_set_t` of the size we pass; pid 0 is
    // the calling thread, so no other thread's affinity changes.
    unsafe { libc::sched_setaffinity(0, size_of::<cpu_set_t>(), &set) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_be_pinned_to_a_core_it_may_use() {
        if let Some([cpu, _]) = two_cpus() {
            let pinned = std::thread::spawn(move || pin_current_thread(cpu))
                .join()
                .unwrap();
            assert!(pinned);
        }
    }
}
