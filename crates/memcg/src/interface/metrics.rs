//! Prometheus metrics (feature `prometheus`): a [`prometheus-client`]
//! [`Collector`] that reads every online group's interface files at scrape
//! time and exposes them as OpenMetrics series labelled `group="<path>"`.
//!
//! | family | type | from |
//! |---|---|---|
//! | `memcg_memory_current_bytes` | gauge | `memory.current` |
//! | `memcg_memory_max_bytes` | gauge | `memory.max` |
//! | `memcg_memory_high_bytes` | gauge | `memory.high` |
//! | `memcg_memory_peak_bytes` | gauge | `memory.peak` |
//! | `memcg_memory_events_total{event=...}` | counter | `memory.events` (hierarchical) |
//! | `memcg_memory_stat_bytes{key=...}` | gauge | `memory.stat`, one series per key |
//!
//! Values are what [`Group::read`] prints, parsed from the file text, so a
//! series always equals the file it comes from, and a key `memory.stat`
//! gains later appears without a change here. A limit set to `max` (no
//! limit) has no series: OpenMetrics has no integer for "unlimited", and
//! `+Inf` would turn a byte gauge into a float. The root has only
//! `memory.current` and `memory.stat` (DESIGN.md §4), so it has only those
//! series. Every family is declared even when it has no series.
//!
//! Nothing is cached: each scrape takes the list of online groups anew, so a
//! removed group's series are gone from the next scrape. Each group's files
//! are read one after another, not atomically with each other: under load
//! `memory.current` and `memory.stat` of one scrape may be a few pages apart
//! (drain stocks with [`Hierarchy::quiesce`] for exact numbers).
//!
//! Scraping takes the hierarchy's locks only inside each [`Group::read`] and
//! formats with none held, so it may run on any thread, including one
//! attached to a group of the hierarchy it reports (its allocations are then
//! charged there, like any other).
//!
//! ```
//! use prometheus_client::registry::Registry;
//!
//! let h = memcg::Hierarchy::new();
//! let mut registry = Registry::default();
//! registry.register_collector(Box::new(memcg::metrics::Collector::new(h.clone())));
//!
//! let acme = h.create("/acme").unwrap();
//! acme.write("memory.max", "1M").unwrap();
//!
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! assert!(text.lines().any(|l| l == r#"memcg_memory_max_bytes{group="/acme"} 1048576"#));
//! assert!(text.ends_with("# EOF\n"));
//! // The same text, from a registry holding only this collector:
//! assert_eq!(memcg::metrics::encode(&h), text);
//! ```
//!
//! [`prometheus-client`]: prometheus_client

use crate::{Group, Hierarchy};
use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Reports a hierarchy's groups at every scrape; register it with
/// [`Registry::register_collector`]. It holds a clone of the
/// [`Hierarchy`], which keeps the tree alive while the collector is
/// registered.
#[derive(Debug, Clone)]
pub struct Collector {
    hierarchy: Hierarchy,
}

impl Collector {
    /// A collector for `hierarchy`.
    pub fn new(hierarchy: Hierarchy) -> Collector {
        Collector { hierarchy }
    }
}

/// The OpenMetrics text of a fresh registry holding only a [`Collector`] for
/// `hierarchy`, ending with `# EOF`.
///
/// ```
/// let h = memcg::Hierarchy::new();
/// let text = memcg::metrics::encode(&h);
/// assert!(text.contains("memcg_memory_current_bytes{group=\"/\"} 0\n"));
/// ```
pub fn encode(hierarchy: &Hierarchy) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collector::new(hierarchy.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String does not fail");
    text
}

/// One group's files as read at the start of a scrape. A file the group does
/// not have (the root's limits, peak and events: reading them is `invalid`),
/// a `max` limit, or a value that does not parse leaves its field empty, and
/// the series is left out.
struct Snapshot {
    path: String,
    current: Option<u64>,
    max: Option<u64>,
    high: Option<u64>,
    peak: Option<u64>,
    events: Vec<(String, u64)>,
    stat: Vec<(String, u64)>,
}

impl Snapshot {
    fn read(group: &Group) -> Snapshot {
        let value = |file| group.read(file).ok().and_then(|s| s.trim().parse().ok());
        let keyed = |file| {
            group
                .read(file)
                .map(|s| parse_keyed(&s))
                .unwrap_or_default()
        };
        Snapshot {
            path: group.path(),
            current: value("memory.current"),
            max: value("memory.max"),
            high: value("memory.high"),
            peak: value("memory.peak"),
            events: keyed("memory.events"),
            stat: keyed("memory.stat"),
        }
    }
}

/// The `key value` lines of a keyed file; lines that are not are skipped.
fn parse_keyed(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

impl PromCollector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let groups: Vec<Snapshot> = self.hierarchy.groups().iter().map(Snapshot::read).collect();
        let e = &mut encoder;
        let help = "memory.current: usage of the group and its descendants";
        bytes_gauge(e, "memcg_memory_current", help, &groups, |s| s.current)?;
        let help = "memory.max: hard limit (no series while it is max)";
        bytes_gauge(e, "memcg_memory_max", help, &groups, |s| s.max)?;
        let help = "memory.high: soft limit (no series while it is max)";
        bytes_gauge(e, "memcg_memory_high", help, &groups, |s| s.high)?;
        let help = "memory.peak: highest memory.current seen";
        bytes_gauge(e, "memcg_memory_peak", help, &groups, |s| s.peak)?;

        let mut family = encoder.encode_descriptor(
            "memcg_memory_events",
            "memory.events: limit events of the group and its descendants",
            None,
            MetricType::Counter,
        )?;
        for s in &groups {
            for (event, v) in &s.events {
                let labels = [("group", &*s.path), ("event", event)];
                ConstCounter::new(*v).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "memcg_memory_stat",
            "memory.stat: hierarchical bytes by kind",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        for s in &groups {
            for (key, v) in &s.stat {
                let labels = [("group", &*s.path), ("key", key)];
                ConstGauge::new(*v).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The family `<name>_bytes`: one gauge per group that has a value.
fn bytes_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    groups: &[Snapshot],
    value: impl Fn(&Snapshot) -> Option<u64>,
) -> std::fmt::Result {
    let mut family =
        encoder.encode_descriptor(name, help, Some(&Unit::Bytes), MetricType::Gauge)?;
    for s in groups {
        if let Some(v) = value(s) {
            ConstGauge::new(v).encode(family.encode_family(&[("group", &*s.path)])?)?;
        }
    }
    Ok(())
}
