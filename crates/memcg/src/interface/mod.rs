//! Layer 5, the interface: what programs hold and read (the kernel's
//! cgroupfs and `memory.*` files).
//!
//! Owns: [`hierarchy`] ([`Hierarchy`](crate::Hierarchy) and
//! [`Group`](crate::Group) handles: creation, removal with its drains,
//! quiesce, and [`global()`](crate::global), the process-wide hierarchy),
//! [`files`] (the cgroup v2 interface files, read and written), [`allocator`]
//! ([`GroupAllocator`](crate::GroupAllocator) handles), [`triggers`]
//! ([`Group::pressure_trigger`](crate::Group::pressure_trigger) and its
//! [`PressureTrigger`](crate::PressureTrigger)), and, with the feature
//! `prometheus`, `metrics`.
//!
//! May import: everything below, and `thread/` (the same layer).

pub(crate) mod allocator;
pub(crate) mod files;
pub(crate) mod hierarchy;
#[cfg(feature = "prometheus")]
pub mod metrics;
pub(crate) mod triggers;
