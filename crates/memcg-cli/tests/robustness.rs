//! Bad input gets a clear error, never a panic or a hang (DESIGN.md §8):
//! the stable counterpart of the cargo-fuzz targets under `fuzz/`, run by
//! `cargo test`. Arbitrary bytes and script-like token soup go to the
//! parsers; mutated `examples/*.mcg` (lines deleted, duplicated or swapped,
//! tokens swapped, numbers changed) go to the real `memcg replay`, which
//! must exit 0, 1 or 2 within a deadline, without a panic or a signal.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memcg_cli::script::{parse, parse_bytes, parse_size, COMMANDS};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A replay that takes longer is a hang (the examples take well under a
/// second each).
const DEADLINE: Duration = Duration::from_secs(20);

/// Words scripts are made of, so that token soup gets past the first word.
fn word() -> impl Strategy<Value = String> {
    let fixed: Vec<String> = COMMANDS
        .iter()
        .map(|c| c.name)
        .chain([
            "/",
            "/a",
            "/a/b",
            "t",
            "u",
            "k",
            "c",
            "as",
            "by",
            "reclaimable",
            "isolated",
            "memory.max",
            "memory.current",
            "memory.stat:anon",
            "cgroup.stat",
            "max",
            "==",
            "~",
            "<=",
            "(",
            ")",
            "(/a",
            "memory.current)",
            "#",
            "busy",
            "invalid",
            "not-found",
            "0",
            "4K",
            "1g",
            "99999999999999999999",
            "18446744073709551615",
            "5",
        ])
        .map(String::from)
        .collect();
    prop_oneof![
        4 => proptest::sample::select(fixed),
        1 => "[ -~]{0,12}",
    ]
}

fn script_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::collection::vec(word(), 0..8).prop_map(|words| words.join(" ")),
        0..12,
    )
    .prop_map(|lines| lines.join("\n"))
}

/// The parsers' contract on any input: no panic; an accepted statement's
/// text parses again to the same command.
fn parses_cleanly(source: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(script) = parse_bytes("p.mcg", source) {
        for statement in &script.statements {
            let again = parse("p.mcg", &statement.text)
                .map_err(|e| TestCaseError::fail(format!("{:?}: {e}", statement.text)))?;
            prop_assert_eq!(&again.statements[0].command, &statement.command);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        parses_cleanly(&bytes)?;
    }

    #[test]
    fn the_parser_survives_script_like_text(source in script_like()) {
        parses_cleanly(source.as_bytes())?;
    }

    /// DESIGN.md §4: one SIZE grammar for scripts and interface files.
    #[test]
    fn size_parsers_agree_and_never_panic(text in prop_oneof!["\\PC{0,24}", "[0-9]{1,22}[kKmMgG]?"]) {
        prop_assert_eq!(parse_size(&text).ok(), memcg::parse_size(&text), "{:?}", text);
    }
}

/// The example scripts, as (name, text).
fn examples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut scripts: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("examples/ exists")
        .map(|entry| entry.expect("examples/ is readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "mcg"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("an example reads");
            (path.display().to_string(), text)
        })
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 8, "examples/*.mcg: {scripts:?}");
    scripts
}

/// One edit of a script.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    SwapTokens(usize, usize, usize),
    /// Replace the n-th number-like token of a line.
    ChangeNumber(usize, &'static str),
}

/// Numbers a mutation may write: small, suffixed, at the caps, over them,
/// and too large for 64 bits.
const NUMBERS: [&str; 12] = [
    "0",
    "1",
    "7",
    "4096",
    "4k",
    "1M",
    "1048576",
    "1048577",
    "1g",
    "2G",
    "18446744073709551615",
    "99999999999999999999",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<usize>().prop_map(Mutation::DeleteLine),
        1 => any::<usize>().prop_map(Mutation::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        1 => (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(l, a, b)| Mutation::SwapTokens(l, a, b)),
        3 => (any::<usize>(), proptest::sample::select(&NUMBERS[..]))
            .prop_map(|(l, n)| Mutation::ChangeNumber(l, n)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for mutation in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *mutation {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
            Mutation::SwapTokens(l, a, b) => {
                let mut tokens: Vec<&str> = lines[l % n].split_whitespace().collect();
                if !tokens.is_empty() {
                    let len = tokens.len();
                    tokens.swap(a % len, b % len);
                    lines[l % n] = tokens.join(" ");
                }
            }
            Mutation::ChangeNumber(l, number) => {
                // The first line from l on with a token that starts with a digit.
                for k in 0..n {
                    let line = &lines[(l + k) % n];
                    let mut tokens: Vec<&str> = line.split_whitespace().collect();
                    if let Some(t) = tokens
                        .iter_mut()
                        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))
                    {
                        *t = number;
                        lines[(l + k) % n] = tokens.join(" ");
                        break;
                    }
                }
            }
        }
    }
    lines.join("\n") + "\n"
}

/// Runs `memcg replay -` on `script`: its exit code and stderr, or a
/// failure for a hang, a signal or a panic.
fn replay_within_deadline(script: &str) -> Result<(Option<i32>, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_memcg"))
        .args(["replay", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("memcg starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let _ = stdin.write_all(script.as_bytes());
    drop(stdin);
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("hang: still running after {DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().expect("stderr reader");
    if stderr.contains("panicked at") {
        return Err(format!("panic: {stderr}"));
    }
    match status.code() {
        Some(code) => Ok((Some(code), stderr)),
        None => Err(format!("killed by a signal: {status:?}; {stderr}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// DESIGN.md §8: a mutated example replays to a verdict — success, a
    /// failed command (1) or a syntax error (2) — never a panic, a signal
    /// or a hang; and a failure names its FILE:LINE.
    #[test]
    fn mutated_examples_replay_to_a_verdict(
        which in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let scripts = examples();
        let (name, text) = &scripts[which % scripts.len()];
        let script = mutate(text, &mutations);
        let (code, stderr) = replay_within_deadline(&script)
            .map_err(|e| TestCaseError::fail(format!("{name} {mutations:?}: {e}\n{script}")))?;
        prop_assert!(
            matches!(code, Some(0..=2)),
            "{} {:?}: exit {:?}: {}\n{}", name, mutations, code, stderr, script
        );
        if code != Some(0) {
            prop_assert!(stderr.starts_with("<stdin>:"), "{}: {}", name, stderr);
        }
    }
}
