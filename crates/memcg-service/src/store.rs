//! The tenant table: live tenants (each a group with its values), and the
//! values of deleted tenants, kept until they are evicted.
//!
//! Ownership: a live tenant's values sit in its own map, which is grown by
//! its own requests, so the map's table is charged to the tenant as well.
//! Deleting a tenant removes its group at once (S1) and moves the map, as
//! it is, to the *retired* table; the bytes stay charged where the group's
//! kmem context bills now, the parent (`/tenants`), until the values are
//! evicted (S2). The service keeps no handle on a removed group, so nothing
//! keeps it dying once its in-flight requests are done.
//!
//! Each tenant's group has `memory.oom.group` 1, and its requests are
//! killable units of it (S14, see [`router`](crate::router)): a tenant that
//! runs past its `memory.max` has every request it has in flight killed,
//! and what they allocated given back, while the other tenants are served.

use bytes::Bytes;
use memcg::{Group, Hierarchy};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

/// What went wrong with a store operation; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No such tenant (404).
    #[error("no such tenant")]
    NoTenant,
    /// No such value (404).
    #[error("no such value")]
    NoValue,
    /// The tenant is over `memory.high` (503); see [`Tenant::over_high`].
    #[error("tenant over memory.high: retry later")]
    OverHigh,
    /// Storing the value made the tenant hit `memory.max` (507); the value
    /// was dropped again.
    #[error("tenant at memory.max: value refused")]
    OverMax,
    /// A bad tenant name or limit value (400).
    #[error("{0}")]
    Invalid(String),
    /// A value longer than [`MAX_VALUE_BYTES`] (413).
    #[error("value longer than {MAX_VALUE_BYTES} bytes")]
    TooLarge,
}

/// The longest value a tenant may store: 2 MiB, axum's default body limit.
/// A tenant's upload in flight is also held to its `memory.max`.
pub const MAX_VALUE_BYTES: usize = 2 << 20;

/// One tenant's values, with the sum of their lengths.
#[derive(Debug, Default)]
pub struct Values {
    map: HashMap<String, Bytes>,
    bytes: usize,
}

impl Values {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sum of the values' lengths.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn get(&self, key: &str) -> Option<Bytes> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: String, value: Bytes) -> Option<Bytes> {
        self.bytes += value.len();
        let old = self.map.insert(key, value);
        self.bytes -= old.as_ref().map_or(0, Bytes::len);
        old
    }

    fn remove(&mut self, key: &str) -> Option<Bytes> {
        let old = self.map.remove(key);
        self.bytes -= old.as_ref().map_or(0, Bytes::len);
        old
    }

    fn absorb(&mut self, other: Values) {
        for (k, v) in other.map {
            self.insert(k, v);
        }
    }
}

/// A live tenant: its group and its values.
#[derive(Debug)]
pub struct Tenant {
    name: String,
    group: Group,
    /// `None` once the tenant is deleted: its values moved to the retired
    /// table, and a write racing with the deletion finds no tenant.
    values: Mutex<Option<Values>>,
    /// The group's `memory.events` `high` counter when last looked at.
    high_seen: AtomicU64,
    /// Writes are refused: see [`over_high`](Self::over_high).
    throttled: AtomicBool,
}

impl Tenant {
    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tenant's group.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// The 503 rule, decided from the group's events, never from a failed
    /// allocation. A tenant is *throttled* from the moment its group's
    /// `memory.events` `high` counter is seen to have grown (a charge went
    /// over `memory.high`), until a write finds its `memory.current` back at
    /// or under `memory.high` (it evicted values, or `memory.high` was
    /// raised). While throttled and still over `memory.high`, writes get
    /// 503; reads and evictions are always served, since they are how a
    /// tenant gets back under. Before refusing, the per-thread charge
    /// stocks are drained, so that pages pre-charged for the tenant but not
    /// used yet (up to 64 per worker thread) do not count against it.
    ///
    /// The counter is read at each write rather than waited for with an
    /// [`EventWatch`](memcg::EventWatch): the charge path counts the event
    /// synchronously, while a watch is woken later by memcg's background
    /// worker, so reading it here refuses the very next write after the one
    /// that crossed `memory.high`. That write itself is served: the
    /// allocation had already succeeded (memcg charges past `memory.high`).
    pub fn over_high(&self) -> bool {
        let high = self.group.events().high;
        if self.high_seen.swap(high, Relaxed) != high {
            self.throttled.store(true, Relaxed);
        }
        if !self.throttled.load(Relaxed) {
            return false;
        }
        let high = read_bytes(&self.group, "memory.high");
        if read_bytes(&self.group, "memory.current") > high {
            // memory.current also counts pages pre-charged to per-thread
            // stocks and not used yet: refuse only for usage that is real.
            self.group.hierarchy().quiesce();
            if read_bytes(&self.group, "memory.current") > high {
                return true;
            }
        }
        self.throttled.store(false, Relaxed);
        false
    }

    /// Whether writes are refused now (as last decided by a write).
    pub fn throttled(&self) -> bool {
        self.throttled.load(Relaxed)
    }

    /// Number of values and their bytes (`None` once deleted).
    pub fn usage(&self) -> Option<(usize, usize)> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.as_ref().map(|v| (v.len(), v.bytes()))
    }
}

/// A write admitted by [`Service::admit_write`]: the tenant's `memory.events`
/// `max` count when it was admitted.
#[derive(Debug, Clone, Copy)]
pub struct Admitted {
    max_events: u64,
}

impl Admitted {
    /// `Err(OverMax)` if `tenant` hit its `memory.max` since the write was
    /// admitted (by this write's copy, or another request's): an upload
    /// checks after each chunk, so it stops a chunk past the limit.
    pub fn check(&self, tenant: &Tenant) -> Result<(), StoreError> {
        if tenant.group.events().max != self.max_events {
            return Err(StoreError::OverMax);
        }
        Ok(())
    }
}

/// An interface file's value in bytes; `max` (no limit) reads as `u64::MAX`.
pub fn read_bytes(group: &Group, file: &str) -> u64 {
    group
        .read(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// The service's state: the hierarchy, the parent group of the tenants, and
/// the tenant tables.
#[derive(Debug)]
pub struct Service {
    hierarchy: Hierarchy,
    parent: Group,
    live: RwLock<HashMap<String, Arc<Tenant>>>,
    retired: Mutex<HashMap<String, Values>>,
}

impl Service {
    /// A service with its tenants under `parent` (created if missing) of
    /// `hierarchy`. Binaries pass [`memcg::global()`] and `/tenants`: the
    /// global allocator charges that hierarchy.
    pub fn new(hierarchy: &Hierarchy, parent: &str) -> memcg::Result<Arc<Service>> {
        let parent = match hierarchy.get(parent) {
            Ok(g) => g,
            Err(_) => hierarchy.create(parent)?,
        };
        Ok(Arc::new(Service {
            hierarchy: hierarchy.clone(),
            parent,
            live: RwLock::default(),
            retired: Mutex::default(),
        }))
    }

    /// The hierarchy the tenants' groups live in.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// The parent of the tenants' groups (`/tenants`).
    pub fn parent(&self) -> &Group {
        &self.parent
    }

    /// The live tenant `name`.
    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Create tenant `name` with the given limits, or change the limits of
    /// the live tenant `name`. Returns whether it was created.
    pub fn put_tenant(
        &self,
        name: &str,
        max: Option<&str>,
        high: Option<&str>,
    ) -> Result<bool, StoreError> {
        let invalid = |e: memcg::Error| StoreError::Invalid(e.to_string());
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        let (group, created) = match live.get(name) {
            Some(t) => (t.group.clone(), false),
            None => {
                let path = format!("{}/{name}", self.parent.path());
                (self.hierarchy.create(&path).map_err(invalid)?, true)
            }
        };
        // A new tenant's group is killed whole by the OOM killer (S14): a
        // tenant past its memory.max loses all its requests in flight.
        let oom_group = created.then_some("1");
        let limits = [
            ("memory.max", max),
            ("memory.high", high),
            ("memory.oom.group", oom_group),
        ];
        let written = limits
            .iter()
            .filter_map(|&(file, v)| v.map(|v| (file, v)))
            .try_for_each(|(file, v)| group.write(file, v));
        if let Err(e) = written {
            if created {
                let _ = self.hierarchy.remove(&group.path());
            }
            return Err(invalid(e));
        }
        if created {
            let tenant = Tenant {
                name: name.to_string(),
                high_seen: AtomicU64::new(group.events().high),
                group,
                values: Mutex::new(Some(Values::default())),
                throttled: AtomicBool::new(false),
            };
            live.insert(name.to_string(), Arc::new(tenant));
        }
        Ok(created)
    }

    /// Delete tenant `name`: its group is removed at once and its values
    /// move to the retired table, still readable and evictable, charged to
    /// the parent until evicted.
    pub fn delete_tenant(&self, name: &str) -> Result<(), StoreError> {
        let tenant = self
            .live
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or(StoreError::NoTenant)?;
        let values = tenant
            .values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        // A frozen tenant's requests would wait for a thaw that cannot come
        // once its group is removed: they run on, and find no tenant.
        tenant.group.freeze(false);
        // Not busy: a group is busy only with children or attached threads,
        // and requests bind their futures to it without attaching.
        self.hierarchy
            .remove(&tenant.group.path())
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        if !values.is_empty() {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            match retired.entry(name.to_string()) {
                // The map moves as it is, its table charged where it was.
                Entry::Vacant(slot) => {
                    slot.insert(values);
                }
                // A tenant of that name was deleted before and has values
                // left: the merged map grows in the parent, which carries
                // both.
                Entry::Occupied(mut slot) => {
                    let _in_parent = self.parent.enter();
                    slot.get_mut().absorb(values);
                }
            }
        }
        Ok(())
    }

    /// Admit a write for the live tenant before its value is read: 503
    /// over `memory.high` ([`Tenant::over_high`]). The [`Admitted`] write
    /// then tells [`put_value`](Self::put_value) whether reading the value
    /// made the tenant hit `memory.max`.
    pub fn admit_write(&self, tenant: &Tenant) -> Result<Admitted, StoreError> {
        if tenant.over_high() {
            return Err(StoreError::OverHigh);
        }
        Ok(Admitted {
            max_events: tenant.group.events().max,
        })
    }

    /// Store `value` under `key` for the live tenant, admitted before the
    /// value was read. `value` is the tenant's own copy, made inside its
    /// group (the body may sit in the connection's buffer, allocated
    /// outside it). 507 if the tenant hit `memory.max` since it was
    /// admitted: the value is dropped again.
    pub fn put_value(
        &self,
        tenant: &Tenant,
        admitted: Admitted,
        key: String,
        value: Bytes,
    ) -> Result<(), StoreError> {
        admitted.check(tenant)?;
        let old = {
            let mut values = tenant.values.lock().unwrap_or_else(|e| e.into_inner());
            let values = values.as_mut().ok_or(StoreError::NoTenant)?;
            values.insert(key, value)
        };
        drop(old);
        Ok(())
    }

    /// Freeze (`true`) or thaw the live tenant `name` (`cgroup.freeze`,
    /// S15): while frozen its requests are held, not polled, and complete
    /// after the thaw.
    pub fn freeze(&self, name: &str, frozen: bool) -> Result<(), StoreError> {
        let tenant = self.tenant(name).ok_or(StoreError::NoTenant)?;
        tenant.group.freeze(frozen);
        Ok(())
    }

    /// Kill every request of the live tenant `name` in flight
    /// (`cgroup.kill`, S14): each gets 507, frozen ones too. Returns how
    /// many were killed.
    pub fn kill(&self, name: &str) -> Result<usize, StoreError> {
        let tenant = self.tenant(name).ok_or(StoreError::NoTenant)?;
        Ok(tenant.group.kill())
    }

    /// The value `key` of tenant `name`: a live tenant's, else a deleted
    /// tenant's not yet evicted.
    pub fn get_value(&self, tenant: Option<&Tenant>, name: &str, key: &str) -> Option<Bytes> {
        if let Some(t) = tenant {
            let values = t.values.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(values) = values.as_ref() {
                return values.get(key);
            }
        }
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.get(name).and_then(|v| v.get(key))
    }

    /// Evict the value `key` (or every value, with `None`) of tenant `name`,
    /// live or deleted; returns how many were evicted.
    pub fn evict(&self, tenant: Option<&Tenant>, name: &str, key: Option<&str>) -> usize {
        // Evicted values are freed after the locks are released. Whichever
        // group runs the free, each value uncharges its own kmem context
        // (S11): the tenant's, or for a deleted tenant the parent it bills.
        let evicted = match tenant.and_then(|t| self.evict_live(t, key)) {
            Some(evicted) => evicted,
            None => self.evict_retired(name, key),
        };
        evicted.len()
    }

    fn evict_live(&self, tenant: &Tenant, key: Option<&str>) -> Option<Vec<Bytes>> {
        let mut values = tenant.values.lock().unwrap_or_else(|e| e.into_inner());
        values.as_mut().map(|v| evict_from(v, key))
    }

    fn evict_retired(&self, name: &str, key: Option<&str>) -> Vec<Bytes> {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let Some(values) = retired.get_mut(name) else {
            return Vec::new();
        };
        let evicted = evict_from(values, key);
        if values.is_empty() {
            // The last value of a deleted tenant: its map goes too.
            retired.remove(name);
        }
        evicted
    }

    /// Number of values and their bytes of tenant `name` since deleted.
    pub fn retired_usage(&self, name: &str) -> Option<(usize, usize)> {
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.get(name).map(|v| (v.len(), v.bytes()))
    }

    /// Names of the live tenants and of the deleted ones with values left.
    pub fn names(&self) -> (Vec<String>, Vec<String>) {
        let mut live: Vec<String> = {
            let live = self.live.read().unwrap_or_else(|e| e.into_inner());
            live.keys().cloned().collect()
        };
        let mut retired: Vec<String> = {
            let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.keys().cloned().collect()
        };
        live.sort();
        retired.sort();
        (live, retired)
    }
}

fn evict_from(values: &mut Values, key: Option<&str>) -> Vec<Bytes> {
    match key {
        Some(k) => values.remove(k).into_iter().collect(),
        None => {
            let all = std::mem::take(values);
            all.map.into_values().collect()
        }
    }
}
