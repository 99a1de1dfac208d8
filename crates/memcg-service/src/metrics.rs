//! `/metrics`: every group's memory files as OpenMetrics text.
//!
//! Series, one per online group, labelled `group="/tenants/acme"`:
//! `memcg_memory_current_bytes`, `memcg_memory_peak_bytes`,
//! `memcg_memory_max_bytes` and `memcg_memory_high_bytes` (only for groups
//! with that limit set; the root has none), and
//! `memcg_memory_events_total{group, event}` for the `memory.events` keys.

use memcg::Hierarchy;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// The service's `/metrics` body: OpenMetrics text ending with `# EOF`.
///
/// Kept as this one function so that the memcg crate's own exporter
/// (`memcg::metrics::encode`, feature `prometheus`) can replace it in one
/// line.
pub fn metrics_text(h: &Hierarchy) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(GroupsCollector(h.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String does not fail");
    text
}

/// Reads each group's interface files at every scrape.
#[derive(Debug)]
struct GroupsCollector(Hierarchy);

/// Gauges read from a file holding bytes (or `max`, which is left out).
const GAUGES: [(&str, &str, &str); 4] = [
    (
        "memcg_memory_current",
        "memory.current",
        "Usage of the group and its descendants.",
    ),
    (
        "memcg_memory_peak",
        "memory.peak",
        "Highest memory.current seen.",
    ),
    (
        "memcg_memory_max",
        "memory.max",
        "Hard limit (groups with a limit only).",
    ),
    (
        "memcg_memory_high",
        "memory.high",
        "Soft limit (groups with a limit only).",
    ),
];

impl Collector for GroupsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let groups = self.0.groups();
        let paths: Vec<String> = groups.iter().map(|g| g.path()).collect();
        for (name, file, help) in GAUGES {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                Some(&Unit::Bytes),
                ConstGauge::new(0u64).metric_type(),
            )?;
            for (g, path) in groups.iter().zip(&paths) {
                // Absent on the root (limits), "max" when unlimited, or the
                // group was removed since it was listed: no sample.
                let Some(v) = g.read(file).ok().and_then(|s| s.trim().parse::<u64>().ok()) else {
                    continue;
                };
                let labels = [("group", path.as_str())];
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "memcg_memory_events",
            "memory.events: low, high, max and oom events of the group and its descendants.",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (g, path) in groups.iter().zip(&paths) {
            let events = g.events();
            for (event, n) in events.iter() {
                let labels = [("group", path.as_str()), ("event", event)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
