//! `/metrics`: every group's memory files as OpenMetrics text, from the
//! memcg crate's own exporter (`memcg::metrics`, feature `prometheus`).
//!
//! Series, one per online group, labelled `group="/tenants/acme"`:
//! `memcg_memory_current_bytes`, `memcg_memory_peak_bytes`,
//! `memcg_memory_max_bytes` and `memcg_memory_high_bytes` (only for groups
//! with that limit set; the root has none),
//! `memcg_memory_events_total{group, event}` for the `memory.events` keys and
//! `memcg_memory_stat_bytes{group, key}` for the `memory.stat` keys.

use memcg::Hierarchy;

/// The service's `/metrics` body: OpenMetrics text ending with `# EOF`.
pub fn metrics_text(h: &Hierarchy) -> String {
    memcg::metrics::encode(h)
}
