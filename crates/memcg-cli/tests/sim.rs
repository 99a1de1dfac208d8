//! `memcg sim` end to end, through the built binary, with few rounds.
//!
//! The contract pinned here: a bad scenario file exits 2 naming the file, the
//! line and the key; the same seed samples the same values (timings apart);
//! every built-in scenario, and every `examples/*.toml`, ends with drift 0
//! (S2: once everything is freed, every counter is back at 0) and exits 0,
//! with shared slab caches (S11) and with isolated ones (S6); the default
//! `churn` runs both and shows what sharing saves: no slab left for a removed
//! group (S3), fewer slabs in use; `protection` keeps a protected tenant's
//! page cache under a neighbour's pressure and loses it without (S13); `oom`
//! stops a runaway tenant with the OOM killer, one unit or its whole group,
//! where plain workers let it starve its neighbours (S14).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `memcg sim ARGS...`.
fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memcg"))
        .arg("sim")
        .args(args)
        .output()
        .expect("memcg runs")
}

/// A fresh scratch path named `name` in this test binary's directory.
fn scratch(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `memcg sim ARGS... --json`, checks it succeeded, and returns the
/// summary.
fn summary(args: &[&str]) -> serde_json::Value {
    let output = sim(&[args, &["--json"]].concat());
    assert_eq!(
        output.status.code(),
        Some(0),
        "memcg sim {args:?} failed:\n{}",
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

/// `samples.csv` of a run into `dir`, without its timing (`_ns`) columns.
fn samples_without_timings(args: &[&str], dir: &Path) -> Vec<String> {
    let out = dir.to_str().expect("UTF-8 path");
    let output = sim(&[args, &["--out", out]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    for file in ["report.svg", "report.md", "samples.csv"] {
        assert!(dir.join(file).is_file(), "--out writes {file}");
    }
    let csv = std::fs::read_to_string(dir.join("samples.csv")).expect("samples.csv");
    let header: Vec<&str> = csv.lines().next().expect("a header").split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !header[i].ends_with("_ns"))
        .collect();
    csv.lines()
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            keep.iter().map(|&i| cells[i]).collect::<Vec<_>>().join(",")
        })
        .collect()
}

#[test]
fn a_bad_scenario_file_names_the_file_the_line_and_the_key() {
    let cases = [
        (
            "type.toml",
            "scenario = \"churn\"\n# jobs\nthreads = \"two\"\n",
            ":3: threads: invalid type",
        ),
        (
            "unknown.toml",
            "scenario = \"churn\"\nrounds = 10\nthread = 2\n",
            ":3: thread: unknown field `thread`",
        ),
        (
            "range.toml",
            "scenario = \"churn\"\n\n[[cache]]\nname = \"a\"\nsize = 64\nobjects = 1\n\n\
             [[cache]]\nname = \"b\"\nsize = 100000\nobjects = 1\n",
            ":10: cache[1].size: 100000 bytes",
        ),
        (
            "fraction.toml",
            "scenario = \"churn\"\nsurvive = 1.5\n",
            ":2: survive: 1.5 is not a fraction",
        ),
        (
            "kind.toml",
            "rounds = 10\nscenario = \"churm\"\n",
            ":2: scenario: unknown kind",
        ),
        (
            "removal.toml",
            "scenario = \"removal-cost\"\nobjects = [1, 10, 0]\n",
            ":2: objects[2]: 0",
        ),
    ];
    for (name, source, want) in cases {
        let path = scratch(name);
        std::fs::write(&path, source).expect("scratch is writable");
        let path = path.to_str().expect("UTF-8 path");
        let output = sim(&[path, "--rounds", "1"]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{path}{want}")),
            "{name}: want `{path}{want}` in:\n{stderr}"
        );
        assert!(output.stdout.is_empty(), "{name}: nothing runs");
    }
    let missing = sim(&["no/such/scenario.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no/such/scenario.toml: cannot read"));
}

#[test]
fn the_same_seed_samples_the_same_values() {
    let args = ["churn", "--rounds", "40", "--seed", "7"];
    let first = samples_without_timings(&args, &scratch("seed-a"));
    let second = samples_without_timings(&args, &scratch("seed-b"));
    assert!(first.len() > 2, "samples were taken: {first:?}");
    assert_eq!(first, second);
    let header: Vec<&str> = first[0].split(',').collect();
    for column in ["isolated", "slab_bytes", "live_object_bytes"] {
        assert!(
            header.contains(&column),
            "samples.csv has {column}: {header:?}"
        );
    }
    // Both designs are sampled, shared first: the slabs survivors pin are
    // the same on every run in both.
    let design: Vec<&str> = first[1..]
        .iter()
        .map(|row| row.split(',').next().expect("a first cell"))
        .collect();
    assert_eq!(design.first(), Some(&"0"), "{first:?}");
    assert_eq!(design.last(), Some(&"1"), "{first:?}");
    let other = samples_without_timings(
        &["churn", "--rounds", "40", "--seed", "8"],
        &scratch("seed-c"),
    );
    assert_ne!(first, other, "the seed matters");

    let quick = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/removal-cost.toml");
    let quick = quick.to_str().expect("UTF-8 path");
    let args = [quick, "--rounds", "1", "--seed", "7"];
    assert_eq!(
        samples_without_timings(&args, &scratch("removal-a")),
        samples_without_timings(&args, &scratch("removal-b"))
    );
}

/// The slab numbers of one design's churn summary hold together: live
/// objects sit in the slabs counted, and every survivor is gone at the end.
fn check_slabs(s: &serde_json::Value) {
    let peak = |key: &str| s[key].as_i64().unwrap_or_else(|| panic!("{key}: {s:#}"));
    assert!(peak("peak_live_object_bytes") > 0, "{s:#}");
    assert!(
        peak("peak_live_object_bytes") <= peak("peak_slab_bytes"),
        "live objects fit in the slabs in use: {s:#}"
    );
    let utilization = s["mean_slab_utilization"].as_f64().expect("a ratio");
    assert!(utilization > 0.0 && utilization <= 1.0, "{s:#}");
}

/// S3 and S11 against S6, one invocation: the default churn runs the shared
/// design at the top level and the isolated one beside it, under one seed.
/// A removed group leaves no slab with shared caches; isolated caches keep
/// dead caches and their slabs, and use more slabs for the same objects.
#[test]
fn the_default_churn_compares_shared_slabs_with_isolated_caches() {
    let shared = summary(&["--rounds", "60"]);
    let isolated = &shared["isolated"];
    assert_eq!(shared["design"], "shared", "{shared:#}");
    assert_eq!(isolated["design"], "isolated", "{shared:#}");
    assert_eq!(shared["parameters"]["isolated"], false);
    assert_eq!(isolated["parameters"]["isolated"], true);
    for key in [
        "seed",
        "objects_allocated",
        "survivors",
        "peak_dead_contexts",
    ] {
        assert_eq!(shared[key], isolated[key], "{key}: the same jobs");
    }
    assert_eq!(
        shared["peak_live_object_bytes"], isolated["peak_live_object_bytes"],
        "the same survivors"
    );

    assert_eq!(shared["peak_dead_slab_bytes"], 0, "S3: {shared:#}");
    assert_eq!(shared["peak_dead_caches"], 0, "S3: {shared:#}");
    assert!(
        isolated["peak_dead_slab_bytes"].as_i64() > Some(0),
        "S6: {isolated:#}"
    );
    assert!(
        isolated["peak_dead_caches"].as_i64() > Some(0),
        "S6: {isolated:#}"
    );
    check_slabs(&shared);
    check_slabs(isolated);

    let (s, i) = (
        shared["peak_slab_bytes"].as_f64().expect("bytes"),
        isolated["peak_slab_bytes"].as_f64().expect("bytes"),
    );
    assert!(
        s < i,
        "shared slabs hold the same objects in fewer slabs: {s} vs {i}"
    );
    let saving = shared["slab_saving"].as_f64().expect("slab_saving");
    assert!(
        (saving - (1.0 - s / i)).abs() < 1e-9,
        "{saving} vs {s} / {i}"
    );
}

/// `isolated = true|false` in a scenario file runs that design alone.
#[test]
fn a_scenario_file_picks_one_design() {
    for (isolated, design) in [(true, "isolated"), (false, "shared")] {
        let path = scratch(&format!("{design}.toml"));
        std::fs::write(
            &path,
            format!("scenario = \"churn\"\nisolated = {isolated}\n"),
        )
        .expect("scratch is writable");
        let s = summary(&[path.to_str().expect("UTF-8 path"), "--rounds", "20"]);
        assert_eq!(s["design"], design, "{s:#}");
        assert!(s.get("isolated").is_none(), "one design: {s:#}");
        assert!(s.get("slab_saving").is_none(), "one design: {s:#}");
        assert_eq!(s["drift_bytes"], 0, "{s:#}");
        check_slabs(&s);
    }
}

/// The drift checks of one churn summary (S1, S2, S4).
fn check_churn_drift(s: &serde_json::Value) {
    assert_eq!(s["drift_bytes"], 0, "{s:#}");
    assert_eq!(s["max_abs_sample_drift_bytes"], 0, "{s:#}");
    assert_eq!(s["max_abs_hierarchy_gap_bytes"], 0, "{s:#}");
    assert_eq!(s["peak_dying_groups"], 0, "S1: {s:#}");
    assert_eq!(s["end_live_contexts"], 0, "{s:#}");
    assert_eq!(s["end_live_caches"], 0, "{s:#}");
    assert!(s["peak_dead_contexts"].as_u64() > Some(0), "{s:#}");
}

/// S2 for whole workloads: after every survivor is freed and every group
/// removed, the root's memory.current is exactly 0, and so was the drift at
/// every sample, with shared and with isolated slab caches.
#[test]
fn drift_is_zero_at_the_end_of_every_built_in_scenario() {
    let churn = summary(&["churn", "--rounds", "60"]);
    check_churn_drift(&churn);
    check_churn_drift(&churn["isolated"]);

    for scenario in ["protection", "oom"] {
        let s = summary(&[scenario, "--rounds", "4"]);
        for v in s["variants"].as_array().expect("variants") {
            assert_eq!(v["drift_bytes"], 0, "{scenario}: {v:#}");
        }
    }

    let removal = summary(&["removal-cost", "--rounds", "1"]);
    assert_eq!(removal["drift_bytes"], 0, "{removal:#}");
    let points = removal["points"].as_array().expect("points");
    let most = |kind: &str| {
        points
            .iter()
            .filter(|p| p["kind"] == kind)
            .map(|p| p["count"].as_u64().expect("a count"))
            .max()
    };
    assert_eq!(most("kmem_objects"), Some(1_000_000));
    assert_eq!(most("isolated_objects"), Some(1_000_000));
    // S8 without a clock: removing a group from shared caches looks at no
    // slab, however many objects it leaves.
    for p in points.iter().filter(|p| p["kind"] == "kmem_objects") {
        assert_eq!(p["slabs_looked_at"], 0, "{p:#}");
    }
}

#[test]
fn every_example_scenario_runs_with_drift_zero() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("examples/ exists")
        .map(|entry| entry.expect("examples/ is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 3, "found {scenarios:?}");
    for scenario in scenarios {
        let s = summary(&[scenario.to_str().expect("UTF-8 path"), "--rounds", "2"]);
        assert_eq!(s["drift_bytes"], 0, "{}: {s:#}", scenario.display());
        if let Some(isolated) = s.get("isolated") {
            assert_eq!(isolated["drift_bytes"], 0, "{}: {s:#}", scenario.display());
        }
    }
}

/// S13 in one run of `examples/protection.toml` (the built-in's sizes over
/// 8): under one parent limit and a batch neighbour that grows past it, a
/// latency tenant protected by `memory.low` or `memory.min` ends with at
/// least 90% of its protection, one without protection with well under
/// half; `low` events are counted only with `memory.low`, where the batch's
/// burst leaves nothing unprotected to reclaim; `memory.min` fails the
/// burst's charges instead (`oom`). The plot is written.
#[test]
fn protection_keeps_the_latency_tenants_working_set_and_nothing_else_does() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/protection.toml");
    let dir = scratch("protection");
    let output = sim(&[
        scenario.to_str().expect("UTF-8 path"),
        "--json",
        "--out",
        dir.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(dir.join("report.svg").is_file(), "the plot is written");
    let s: serde_json::Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let p = &s["parameters"];
    let size = |key: &str| {
        let text = p[key].as_str().unwrap_or_else(|| panic!("{key}: {p:#}"));
        memcg::parse_size(text).unwrap_or_else(|| panic!("{key}: {text}")) as f64
    };
    let goal = size("working_set").min(size("protection"));
    let variant = |name: &str| {
        s["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .find(|v| v["variant"] == name)
            .unwrap_or_else(|| panic!("variant {name}: {s:#}"))
            .clone()
    };
    let (none, low, min) = (variant("none"), variant("low"), variant("min"));
    let num = |v: &serde_json::Value, key: &str| {
        v[key].as_f64().unwrap_or_else(|| panic!("{key}: {v:#}"))
    };
    for protected in [&low, &min] {
        assert!(
            num(protected, "final_latency_bytes") >= 0.9 * goal,
            "protected: {protected:#}"
        );
    }
    assert!(
        num(&none, "final_latency_bytes") < 0.5 * goal,
        "unprotected: {none:#}"
    );
    assert!(num(&low, "latency_low_events") > 0.0, "{low:#}");
    assert_eq!(none["latency_low_events"], 0, "{none:#}");
    assert_eq!(min["latency_low_events"], 0, "{min:#}");
    assert_eq!(
        min["min_latency_bytes"].as_f64(),
        Some(goal),
        "memory.min is never reclaimed: {min:#}"
    );
    assert!(num(&min, "host_oom_events") > 0.0, "{min:#}");
    assert_eq!(low["host_oom_events"], 0, "{low:#}");
    for v in [&none, &low, &min] {
        assert_eq!(v["drift_bytes"], 0, "{v:#}");
    }
}

/// S14 in one run of `examples/oom.toml`: a runaway tenant leaks under a
/// parent limit shared with well-behaved tenants. With plain workers nobody
/// is killed and the runaway holds the parent at its limit, so the others'
/// work fails; with killable workers the OOM killer kills the runaway's
/// leaking unit (never a neighbour's), and with `memory.oom.group` the
/// runaway's whole tenant, every worker of it; the others then complete at
/// least as much work as without kills. The limit holds throughout, and the
/// same seed gives the same samples (the workers take turns).
#[test]
fn the_oom_killer_stops_the_runaway_tenant_and_not_its_neighbours() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/oom.toml");
    let scenario = scenario.to_str().expect("UTF-8 path");
    let dir = scratch("oom");
    let output = sim(&[
        scenario,
        "--json",
        "--out",
        dir.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(dir.join("report.svg").is_file(), "the plot is written");
    let s: serde_json::Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let variant = |name: &str| {
        s["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .find(|v| v["variant"] == name)
            .unwrap_or_else(|| panic!("variant {name}: {s:#}"))
            .clone()
    };
    let (none, kill, group) = (variant("no_kill"), variant("kill"), variant("group_kill"));
    let num = |v: &serde_json::Value, key: &str| {
        v[key].as_u64().unwrap_or_else(|| panic!("{key}: {v:#}"))
    };

    assert_eq!(num(&none, "kills"), 0, "nothing is killable: {none:#}");
    assert_eq!(num(&none, "group_kills"), 0, "{none:#}");
    assert!(
        num(&none, "oom_events") > 0,
        "the runaway met the limit: {none:#}"
    );
    assert!(
        num(&none, "others_failed_charges") > 0,
        "it starved its neighbours: {none:#}"
    );

    assert!(num(&kill, "kills") >= 1, "{kill:#}");
    assert_eq!(num(&kill, "group_kills"), 0, "memory.oom.group 0: {kill:#}");

    assert!(num(&group, "group_kills") >= 1, "{group:#}");
    let workers = s["parameters"]["workers"].as_u64().expect("workers");
    assert_eq!(
        num(&group, "kills"),
        num(&group, "group_kills") * workers,
        "a group kill takes every worker of the tenant: {group:#}"
    );

    for v in [&none, &kill, &group] {
        assert_eq!(
            num(v, "others_kills"),
            0,
            "only the runaway is killed: {v:#}"
        );
        assert!(
            num(v, "parent_peak") <= num(v, "parent_max"),
            "memory.max holds: {v:#}"
        );
        assert!(
            num(v, "runaway_peak") <= num(v, "parent_max"),
            "the runaway stays under the parent's limit: {v:#}"
        );
        assert_eq!(v["drift_bytes"], 0, "{v:#}");
    }
    for v in [&kill, &group] {
        assert!(
            num(v, "others_progress") > num(&none, "others_progress"),
            "killing the runaway lets the others work: {v:#} vs {none:#}"
        );
    }

    let args = [scenario, "--rounds", "20", "--seed", "3"];
    assert_eq!(
        samples_without_timings(&args, &scratch("oom-a")),
        samples_without_timings(&args, &scratch("oom-b"))
    );
}
