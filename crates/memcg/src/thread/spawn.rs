//! Threads that carry their group (S12).
//!
//! A thread started through [`spawn`] starts where the thread that started
//! it is: in its group, in the root, or following the default group if it
//! was never attached. [`Group::spawn`](crate::Group::spawn) starts it in a
//! given group. Either way the child is listed in its group's
//! `cgroup.procs` before it runs, so the group cannot be removed under a
//! thread about to start; afterwards the two threads move independently.
//!
//! ```
//! let h = memcg::Hierarchy::new();
//! let job = h.create("/job").unwrap();
//! let _in_job = job.enter().unwrap();
//! let worker = memcg::spawn({
//!     let h = h.clone();
//!     move || h.current_group().path()
//! });
//! assert_eq!(worker.join().unwrap(), "/job");
//! ```

use crate::error::{Error, Result};
use crate::interface::hierarchy::Group;
use crate::thread::task::Start;
use std::thread::JoinHandle;

/// Start a thread where the calling thread is attached (S12), with
/// [`std::thread::spawn`]'s signature: the child charges the same group (or,
/// if the caller never attached, follows the default group). Moving either
/// thread later does not move the other.
///
/// # Panics
/// As [`std::thread::spawn`], if the OS cannot create a thread.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f).expect("failed to spawn thread")
}

/// Thread factory, as [`std::thread::Builder`], for threads that carry their
/// group: a name and a stack size, started where the calling thread is
/// ([`spawn`](Builder::spawn)) or in a group ([`spawn_in`](Builder::spawn_in)).
///
/// ```
/// let h = memcg::Hierarchy::new();
/// let g = h.create("/pool").unwrap();
/// let (go, wait) = std::sync::mpsc::channel::<()>();
/// let t = memcg::Builder::new()
///     .name("pool-0".into())
///     .stack_size(256 * 1024)
///     .spawn_in(&g, move || {
///         wait.recv().unwrap();
///         vec![0u8; 1000].len()
///     })
///     .unwrap();
/// assert!(g.read("cgroup.procs").unwrap().contains("pool-0"));
/// go.send(()).unwrap();
/// assert_eq!(t.join().unwrap(), 1000);
/// // The thread left the group as it exited.
/// assert_eq!(g.read("cgroup.procs").unwrap(), "");
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with the defaults of [`std::thread::Builder::new`].
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Name the thread (shown in `cgroup.procs`).
    pub fn name(mut self, name: String) -> Builder {
        self.name = Some(name);
        self
    }

    /// Set the thread's stack size in bytes.
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Start the thread where the calling thread is attached (see [`spawn`]).
    /// Fails with `again` if the OS cannot create a thread.
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let start = {
            let _internal = crate::reentrancy::Internal::enter();
            Start::inherit(self.name.as_deref())
        };
        self.start(start, f)
    }

    /// Start the thread in `group`. Fails with `not-found` if the group was
    /// removed, `again` if the OS cannot create a thread.
    pub fn spawn_in<F, T>(self, group: &Group, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let start = Start::into(&group.inner, self.name.as_deref())?;
        self.start(start, f)
    }

    fn start<F, T>(self, start: Start, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let mut std_builder = std::thread::Builder::new();
        if let Some(name) = self.name {
            std_builder = std_builder.name(name);
        }
        if let Some(size) = self.stack_size {
            std_builder = std_builder.stack_size(size);
        }
        // The start place travels to the child through a slot the parent
        // can take back if the OS refuses the thread (the closure is then
        // dropped unrun, with the place in it).
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(start)));
        let child_slot = slot.clone();
        let spawned = std_builder.spawn(move || {
            let start = child_slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(child_slot);
            if let Some(start) = start {
                start.apply();
            }
            f()
        });
        match spawned {
            Ok(handle) => Ok(handle),
            Err(e) => {
                let start = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(start) = start {
                    start.cancel();
                }
                Err(Error::Spawn(e.to_string()))
            }
        }
    }
}

impl Group {
    /// Start a thread attached to this group (S12); fails with `not-found`
    /// if the group was removed. The thread is listed in `cgroup.procs`
    /// (the group is busy) from this call until it exits or moves.
    ///
    /// ```
    /// let h = memcg::Hierarchy::new();
    /// let g = h.create("/batch").unwrap();
    /// let t = g.spawn(|| memcg::KmemPages::alloc(8192).map(|p| p.pages())).unwrap();
    /// let pages = t.join().unwrap().unwrap();
    /// assert_eq!(pages, 2);
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Builder::new().spawn_in(self, f)
    }
}
