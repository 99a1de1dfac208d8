//! Layer 2, accounting: whom a charge bills and how it gets there (the
//! charging half of the kernel's `mm/memcontrol.c`: `try_charge`,
//! `memcg_stock`, `obj_stock`, `get_mem_cgroup_from_current`).
//!
//! Owns: [`charge`] (charging and uncharging pages through a kmem context to
//! whatever live group it bills, limits, `memory.high` throttling debt),
//! [`charge_stock`] (per-thread stocks of pre-charged pages, which other
//! threads can drain), [`object_stock`] (per-thread stocks of pre-charged
//! bytes for shared-slab objects, and their statistics batching),
//! [`slab_hook`] (the only way the slab allocator charges and uncharges an
//! object), and [`current`] (the calling thread's group and context).
//!
//! May import: the crate's leaves and `group/`. It reaches up (reclaim at a
//! limit, draining the allocator's object stocks) only through hooks the
//! layers above register.

pub(crate) mod charge;
pub(crate) mod charge_stock;
pub(crate) mod current;
pub(crate) mod object_stock;
pub(crate) mod slab_hook;
