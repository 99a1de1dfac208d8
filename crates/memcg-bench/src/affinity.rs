//! Pinning the `remote` workload's two threads to two different cores.
//!
//! Left to the scheduler, the producer and the consumer sometimes share a core
//! (then they take turns and the frees are not remote at all) and sometimes
//! run on two (then every handed-over object crosses caches). The two differ
//! by up to 10x for some allocators, so an unpinned median depends on luck.
//! Pinning measures the case the workload is about: two threads running at
//! once, one allocating and one freeing.

use std::mem::size_of;

/// The kernel's `cpu_set_t`: 1024 bits.
type CpuSet = [u64; 16];

extern "C" {
    fn sched_getaffinity(pid: i32, size: usize, mask: *mut CpuSet) -> i32;
    fn sched_setaffinity(pid: i32, size: usize, mask: *const CpuSet) -> i32;
}

/// The first two cores this process may run on, if it may run on two.
pub fn two_cpus() -> Option<[usize; 2]> {
    let mut set: CpuSet = [0; 16];
    // SAFETY: `set` is a writable buffer of the size we pass; pid 0 is the
    // calling thread.
    if unsafe { sched_getaffinity(0, size_of::<CpuSet>(), &mut set) } != 0 {
        return None;
    }
    let mut cpus = (0..1024).filter(|&cpu| set[cpu / 64] & (1 << (cpu % 64)) != 0);
    Some([cpus.next()?, cpus.next()?])
}

/// Pins the calling thread to `cpu`; false if the kernel refused.
pub fn pin_current_thread(cpu: usize) -> bool {
    if cpu >= 1024 {
        return false;
    }
    let mut set: CpuSet = [0; 16];
    set[cpu / 64] = 1 << (cpu % 64);
    // SAFETY: `set` is a readable buffer of the size we pass; pid 0 is the
    // calling thread, so no other thread's affinity changes.
    unsafe { sched_setaffinity(0, size_of::<CpuSet>(), &set) == 0 }
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
