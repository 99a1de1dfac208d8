//! The markdown table and the machine it was measured on.

use std::fmt::Write as _;

use crate::contender::Role;
use crate::workload::Workload;

/// One measured row.
#[derive(Clone, Debug)]
pub struct Row {
    /// The workload measured.
    pub workload: Workload,
    /// The contender's name.
    pub allocator: &'static str,
    /// Whether the row counts toward the fastest peer.
    pub role: Role,
    /// Median nanoseconds per operation.
    pub ns_per_op: f64,
}

/// The fastest peer's ns/op for `w`, if any peer ran it.
fn fastest_peer(rows: &[Row], w: Workload) -> Option<f64> {
    rows.iter()
        .filter(|r| r.workload == w && r.role == Role::Peer)
        .map(|r| r.ns_per_op)
        .min_by(f64::total_cmp)
}

/// The report's table: one line per row, in the order given, with each row's
/// ns/op divided by the fastest peer of its workload.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | allocator | ns/op | ratio to fastest peer |\n|---|---|---:|---:|\n",
    );
    for r in rows {
        let ratio = match fastest_peer(rows, r.workload) {
            Some(best) => format!("{:.2}", r.ns_per_op / best),
            None => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} |",
            r.workload.name(),
            r.allocator,
            r.ns_per_op,
            ratio
        );
    }
    out
}

/// The CPU model, the cores this process may use, and the compiler, as
/// lines of the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let remote = match crate::affinity::two_cpus() {
        Some([producer, consumer]) => {
            format!("producer pinned to cpu {producer}, consumer to cpu {consumer}")
        }
        None => "unpinned (fewer than two cores available)".to_owned(),
    };
    let snmalloc = if env!("MEMCG_BENCH_SNMALLOC_NDEBUG") == "true" {
        "built with -DNDEBUG"
    } else {
        "WARNING: built without -DNDEBUG, so with its debug assertions on; \
         set CXXFLAGS=-DNDEBUG when building this report"
    };
    format!(
        "- cpu: {cpu}, {cores} cores available\n- rustc: {}\n- remote: {remote}\n\
         - snmalloc: {snmalloc}\n",
        env!("MEMCG_BENCH_RUSTC")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: Workload, allocator: &'static str, role: Role, ns_per_op: f64) -> Row {
        Row {
            workload,
            allocator,
            role,
            ns_per_op,
        }
    }

    #[test]
    fn ratio_is_to_the_fastest_peer_of_the_same_workload() {
        let rows = [
            row(Workload::Single64, "a", Role::Peer, 20.0),
            row(Workload::Single64, "b", Role::Peer, 10.0),
            row(Workload::Single64, "ours", Role::Own, 5.0),
            row(Workload::Churn, "a", Role::Peer, 40.0),
        ];
        let t = table(&rows);
        assert!(t.contains("| single64 | a | 20.0 | 2.00 |"), "{t}");
        assert!(t.contains("| single64 | b | 10.0 | 1.00 |"), "{t}");
        assert!(t.contains("| single64 | ours | 5.0 | 0.50 |"), "{t}");
        assert!(t.contains("| churn | a | 40.0 | 1.00 |"), "{t}");
    }
}
