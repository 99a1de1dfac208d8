//! Layer 3, the allocator: where memory comes from (the kernel's
//! `mm/slub.c`, `mm/page_alloc.c` for kmem pages, and the glue
//! `memcg_slab_post_alloc_hook` / `memcg_slab_free_hook`).
//!
//! Owns: [`global`] (the [`MemcgAlloc`](crate::MemcgAlloc) global allocator:
//! size dispatch, re-entrancy, frees by address), [`kmem`] (page-level kmem
//! objects), [`slab`] (shared slabs with byte charges, per-group caches on
//! request; the fast path on one screen in `slab/fast.rs`), [`large`] (large
//! blocks in cached runs of pages).
//!
//! May import: the leaves, `group/` and `accounting/`. All `unsafe` of the
//! crate but the kmem context pointer lives here.

pub(crate) mod global;
pub(crate) mod kmem;
pub mod large;
pub mod slab;
