//! Layer 5, threads and tasks: what carries a group (the kernel's task
//! ↔ cgroup association, `cgroup.procs`, and `memory.high` throttling on
//! return to user space).
//!
//! Owns: [`task`] (attaching threads, enter scopes, throttle points, task
//! lists and the thread's exit), [`spawn`] (threads started in a group),
//! [`future`] (futures polled in a group), [`killable`] (killable futures
//! and threads, and their safe point `check_killed`: S14, S15), and with
//! the feature `tower`, `tower` (a layer binding requests killable).
//!
//! May import: everything below, and `interface/` (the same layer: the
//! [`Group`](crate::Group) handle these take, which in turn enters through
//! [`task`]).

pub(crate) mod future;
pub(crate) mod killable;
pub(crate) mod spawn;
pub(crate) mod task;
#[cfg(feature = "tower")]
pub(crate) mod tower;
