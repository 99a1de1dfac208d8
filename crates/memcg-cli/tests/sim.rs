//! `memcg sim` end to end, through the built binary, with few rounds.
//!
//! The contract pinned here: a bad scenario file exits 2 naming the file, the
//! line and the key; the same seed samples the same values (timings apart);
//! every built-in scenario, and every `examples/*.toml`, ends with drift 0
//! (S2: once everything is freed, every counter is back at 0) and exits 0.

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

/// S2 for whole workloads: after every survivor is freed and every group
/// removed, the root's memory.current is exactly 0, and so was the drift at
/// every sample.
#[test]
fn drift_is_zero_at_the_end_of_every_built_in_scenario() {
    let churn = summary(&["churn", "--rounds", "60"]);
    assert_eq!(churn["drift_bytes"], 0, "{churn:#}");
    assert_eq!(churn["max_abs_sample_drift_bytes"], 0, "{churn:#}");
    assert_eq!(churn["max_abs_hierarchy_gap_bytes"], 0, "{churn:#}");
    assert_eq!(churn["peak_dying_groups"], 0, "S1: {churn:#}");
    assert_eq!(churn["end_live_contexts"], 0, "{churn:#}");
    assert!(churn["peak_dead_contexts"].as_u64() > Some(0), "{churn:#}");

    let removal = summary(&["removal-cost", "--rounds", "1"]);
    assert_eq!(removal["drift_bytes"], 0, "{removal:#}");
    let most_objects = removal["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter(|p| p["kind"] == "kmem_objects")
        .map(|p| p["count"].as_u64().expect("a count"))
        .max();
    assert_eq!(most_objects, Some(1_000_000));
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
    }
}
