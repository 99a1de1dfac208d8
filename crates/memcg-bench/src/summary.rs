//! `--json`: DESIGN.md §7's figures as one JSON object, for tools that
//! track them from run to run.
//!
//! The keys are fixed ([`Summary`]'s fields, serialized as they are named);
//! every figure is a plain number, and a figure the run did not measure (its
//! study was not selected, the allocator panicked, or valgrind is missing)
//! is `null`. Ratios are `memcg (global allocator)` over the fastest peer
//! (ns/op over ns/op), `root_ratios` the same for `memcg-root (global
//! allocator)`; footprints are peak RSS over the smallest peer's;
//! instructions are per alloc+free pair; utilizations are fractions (0.85 is
//! 85%).

use serde::Serialize;

use crate::contender::{MEMCG_GLOBAL, MEMCG_GLOBAL_ROOT};
use crate::global::GlobalChoice;
use crate::instructions::InstructionCount;
use crate::removal::{Caches, Case, Removal};
use crate::report::{self, Row};
use crate::scaling::{Path, Scaling};
use crate::utilization::Utilization;
use crate::workload::Workload;

/// The §7 figures of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// `memcg (global allocator)` ns/op over the fastest peer's, per workload.
    pub ratios: Ratios,
    /// `memcg (global allocator)` in a group over the same in no group.
    pub on_off: OnOff,
    /// Removal of a group with 1M live objects, its slabs fragmented, over
    /// removal of a group with none (CPU caches equally cold).
    pub removal_ratio: Option<f64>,
    /// What a group removed with live objects leaves behind, in bytes:
    /// `Hierarchy::leftovers().pinned_bytes` with that one group removed
    /// (its kmem context and dead caches).
    pub leftover_bytes: Option<u64>,
    /// Live object bytes over the bytes of the slabs in use.
    pub utilization: UtilizationFigures,
    /// Throughput of two threads charging one group over one thread's.
    pub scaling_2threads: ScalingFigures,
    /// `memcg-root (global allocator)` ns/op over the fastest peer's.
    pub root_ratios: RootRatios,
    /// `memcg (global allocator)`'s child's peak RSS over the smallest
    /// peer's, on the real-world suite.
    pub footprint: Footprint,
    /// Instructions per 64-byte alloc+free pair through the global
    /// allocator, counted by callgrind.
    pub instructions: Instructions,
}

/// Ratios to the fastest peer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ratios {
    /// single64.
    pub single64: Option<f64>,
    /// churn.
    pub churn: Option<f64>,
    /// remote.
    pub remote: Option<f64>,
    /// std.
    pub std: Option<f64>,
    /// larson.
    pub larson: Option<f64>,
    /// xmalloc-test.
    pub xmalloc: Option<f64>,
    /// mstress.
    pub mstress: Option<f64>,
    /// cache-scratch.
    pub cache_scratch: Option<f64>,
    /// json (real-world).
    pub json: Option<f64>,
    /// strings (real-world).
    pub strings: Option<f64>,
    /// btree (real-world).
    pub btree: Option<f64>,
}

/// Ratios of the row with threads in no group to the fastest peer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RootRatios {
    /// single64.
    pub single64: Option<f64>,
    /// churn.
    pub churn: Option<f64>,
    /// remote.
    pub remote: Option<f64>,
}

/// Peak RSS over the smallest peer's.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Footprint {
    /// json.
    pub json: Option<f64>,
    /// strings.
    pub strings: Option<f64>,
    /// btree.
    pub btree: Option<f64>,
}

/// Instructions per pair, per allocator.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Instructions {
    /// `MemcgAlloc`, the thread in a group.
    pub memcg: Option<f64>,
    /// `MemcgAlloc`, the thread in no group.
    pub memcg_root: Option<f64>,
    /// mimalloc.
    pub mimalloc: Option<f64>,
    /// jemalloc.
    pub jemalloc: Option<f64>,
    /// snmalloc.
    pub snmalloc: Option<f64>,
    /// The system allocator.
    pub system: Option<f64>,
}

/// Accounting on over off.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OnOff {
    /// single64.
    pub single64: Option<f64>,
    /// churn.
    pub churn: Option<f64>,
    /// std.
    pub std: Option<f64>,
}

/// Slab utilization of the two §7 configurations.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UtilizationFigures {
    /// 100 groups x 1,000 objects.
    pub g100_o1000: Option<f64>,
    /// 1,000 groups x 100 objects.
    pub g1000_o100: Option<f64>,
}

/// Two-thread over one-thread throughput.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScalingFigures {
    /// Page-level kmem (`KmemPages`).
    pub kmem: Option<f64>,
    /// Large blocks through `MemcgAlloc`.
    pub large: Option<f64>,
}

/// `Some(x)` for a finite `x`: a NaN from a panicked row is no figure.
fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|x| x.is_finite())
}

impl Summary {
    /// The figures from what the run measured: the ns/op rows, and each
    /// study that ran.
    pub fn new(
        rows: &[Row],
        removals: Option<&[Removal]>,
        utilizations: &[Utilization],
        scalings: &[Scaling],
        counts: &[InstructionCount],
    ) -> Summary {
        let ratio = |w| finite(report::ratio_to_fastest_peer(rows, w, MEMCG_GLOBAL));
        let root_ratio = |w| finite(report::ratio_to_fastest_peer(rows, w, MEMCG_GLOBAL_ROOT));
        let footprint = |w| finite(report::rss_ratio(rows, w, MEMCG_GLOBAL));
        let count = |choice, in_group| {
            counts
                .iter()
                .find(|c| c.target.choice == choice && c.target.in_group == in_group)
                .map(|c| c.per_pair)
        };
        let on_off = |w| finite(report::on_off(rows, w, MEMCG_GLOBAL, MEMCG_GLOBAL_ROOT));
        let removal = |case| {
            removals?
                .iter()
                .find(|r| r.case == case && r.caches == Caches::EquallyCold)
        };
        let utilization = |groups, live| {
            utilizations
                .iter()
                .find(|u| {
                    u.config
                        .is_some_and(|c| c.groups == groups && c.live_per_group == live)
                })
                .map(|u| u.of_requested())
        };
        let scaling = |path| scalings.iter().find(|s| s.path == path).map(|s| s.ratio());
        Summary {
            ratios: Ratios {
                single64: ratio(Workload::Single64),
                churn: ratio(Workload::Churn),
                remote: ratio(Workload::Remote),
                std: ratio(Workload::Std),
                larson: ratio(Workload::Larson),
                xmalloc: ratio(Workload::Xmalloc),
                mstress: ratio(Workload::Mstress),
                cache_scratch: ratio(Workload::CacheScratch),
                json: ratio(Workload::Json),
                strings: ratio(Workload::Strings),
                btree: ratio(Workload::Btree),
            },
            on_off: OnOff {
                single64: on_off(Workload::Single64),
                churn: on_off(Workload::Churn),
                std: on_off(Workload::Std),
            },
            removal_ratio: finite(
                removal(Case::Fragmented)
                    .zip(removal(Case::Empty))
                    .map(|(frag, empty)| frag.micros.median / empty.micros.median),
            ),
            leftover_bytes: removal(Case::Fragmented).map(|r| r.leftovers.pinned_bytes as u64),
            utilization: UtilizationFigures {
                g100_o1000: finite(utilization(100, 1_000)),
                g1000_o100: finite(utilization(1_000, 100)),
            },
            scaling_2threads: ScalingFigures {
                kmem: finite(scaling(Path::Kmem)),
                large: finite(scaling(Path::Large)),
            },
            root_ratios: RootRatios {
                single64: root_ratio(Workload::Single64),
                churn: root_ratio(Workload::Churn),
                remote: root_ratio(Workload::Remote),
            },
            footprint: Footprint {
                json: footprint(Workload::Json),
                strings: footprint(Workload::Strings),
                btree: footprint(Workload::Btree),
            },
            instructions: Instructions {
                memcg: finite(count(GlobalChoice::Memcg, true)),
                memcg_root: finite(count(GlobalChoice::Memcg, false)),
                mimalloc: finite(count(GlobalChoice::Mimalloc, false)),
                jemalloc: finite(count(GlobalChoice::Jemalloc, false)),
                snmalloc: finite(count(GlobalChoice::Snmalloc, false)),
                system: finite(count(GlobalChoice::System, false)),
            },
        }
    }

    /// The one-line JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain numbers and nulls always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contender::Role;
    use crate::global::Rss;
    use crate::instructions::Target;
    use crate::measure::Spread;
    use crate::report::tests::row;
    use crate::utilization::Config;
    use memcg::Leftovers;

    fn with_rss(mut row: Row, peak: u64) -> Row {
        row.rss = Some(Rss { peak, start: 1 });
        row
    }

    fn spread(median: f64) -> Spread {
        Spread {
            min: median,
            median,
            max: median,
        }
    }

    #[test]
    fn an_empty_run_has_every_key_and_only_nulls() {
        let json = Summary::new(&[], None, &[], &[], &[]).to_json();
        assert_eq!(
            json,
            "{\"ratios\":{\"single64\":null,\"churn\":null,\"remote\":null,\"std\":null,\
             \"larson\":null,\"xmalloc\":null,\"mstress\":null,\"cache_scratch\":null,\
             \"json\":null,\"strings\":null,\"btree\":null},\
             \"on_off\":{\"single64\":null,\"churn\":null,\"std\":null},\
             \"removal_ratio\":null,\"leftover_bytes\":null,\
             \"utilization\":{\"g100_o1000\":null,\"g1000_o100\":null},\
             \"scaling_2threads\":{\"kmem\":null,\"large\":null},\
             \"root_ratios\":{\"single64\":null,\"churn\":null,\"remote\":null},\
             \"footprint\":{\"json\":null,\"strings\":null,\"btree\":null},\
             \"instructions\":{\"memcg\":null,\"memcg_root\":null,\"mimalloc\":null,\
             \"jemalloc\":null,\"snmalloc\":null,\"system\":null}}"
        );
    }

    #[test]
    fn figures_land_under_their_keys_as_plain_numbers() {
        let mut panicked = row(Workload::Churn, MEMCG_GLOBAL, Role::Own, f64::NAN);
        panicked.panicked = Some("boom".into());
        let rows = [
            row(Workload::Larson, "a", Role::Peer, 8.0),
            row(Workload::Larson, "b", Role::Peer, 4.0),
            row(Workload::Larson, MEMCG_GLOBAL, Role::Own, 5.0),
            row(Workload::Single64, "a", Role::Peer, 2.0),
            row(Workload::Single64, MEMCG_GLOBAL, Role::Own, 2.0),
            row(Workload::Single64, MEMCG_GLOBAL_ROOT, Role::Own, 1.6),
            row(Workload::Churn, "a", Role::Peer, 2.0),
            panicked,
            row(Workload::Churn, MEMCG_GLOBAL_ROOT, Role::Own, 1.0),
            with_rss(row(Workload::Json, "a", Role::Peer, 3.0), 300),
            with_rss(row(Workload::Json, "b", Role::Peer, 4.0), 200),
            with_rss(row(Workload::Json, MEMCG_GLOBAL, Role::Own, 6.0), 300),
        ];
        let removal = |case, caches, micros, pinned| Removal {
            case,
            caches,
            micros: spread(micros),
            slabs_looked_at: 0,
            leftovers: Leftovers {
                pinned_bytes: pinned,
                ..Leftovers::default()
            },
        };
        let removals = [
            removal(Case::Empty, Caches::EquallyCold, 2.0, 0),
            removal(Case::Fragmented, Caches::EquallyCold, 3.0, 264),
            removal(Case::Empty, Caches::AsLeft, 1.0, 0),
            removal(Case::Fragmented, Caches::AsLeft, 9.0, 264),
        ];
        let utilization = Utilization {
            config: Some(Config::ALL[1]),
            requested_bytes: 80,
            slab_bytes: 100,
            ..Utilization::default()
        };
        let scaling = Scaling {
            path: Path::Large,
            one: spread(10.0),
            two: spread(8.0),
        };
        let counts = [
            InstructionCount {
                target: Target::ALL[0],
                per_pair: 31.5,
            },
            InstructionCount {
                target: Target::ALL[1],
                per_pair: 30.0,
            },
            InstructionCount {
                target: Target::ALL[2],
                per_pair: 28.0,
            },
        ];
        let s = Summary::new(&rows, Some(&removals), &[utilization], &[scaling], &counts);
        assert_eq!(s.ratios.larson, Some(1.25));
        assert_eq!(s.ratios.single64, Some(1.0));
        assert_eq!(s.ratios.churn, None, "a panicked row has no figure");
        assert_eq!(s.on_off.single64, Some(1.25));
        assert_eq!(
            s.removal_ratio,
            Some(1.5),
            "equally cold, fragmented / empty"
        );
        assert_eq!(s.leftover_bytes, Some(264));
        assert_eq!(s.utilization.g1000_o100, Some(0.8));
        assert_eq!(s.utilization.g100_o1000, None);
        assert_eq!(s.scaling_2threads.large, Some(1.25));
        assert_eq!(s.root_ratios.single64, Some(0.8));
        assert_eq!(s.root_ratios.churn, Some(0.5));
        assert_eq!(s.footprint.json, Some(1.5), "over the smallest peer");
        assert_eq!(s.ratios.json, Some(2.0));
        assert_eq!(s.instructions.memcg, Some(31.5));
        assert_eq!(s.instructions.memcg_root, Some(30.0));
        assert_eq!(s.instructions.mimalloc, Some(28.0));
        assert_eq!(s.instructions.system, None);
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["ratios"]["larson"], 1.25);
        assert_eq!(json["leftover_bytes"], 264);
        assert_eq!(json["utilization"]["g1000_o100"], 0.8);
        assert!(json["ratios"]["cache_scratch"].is_null());
        assert_eq!(json["footprint"]["json"], 1.5);
        assert_eq!(json["instructions"]["memcg_root"], 30.0);
        assert!(json["footprint"]["btree"].is_null());
    }
}
