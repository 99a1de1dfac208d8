//! The real-world suite of DESIGN.md §7: what a program that only uses std
//! and serde pays for its global allocator, in time and in peak RSS.
//!
//! Each workload allocates the way programs do — collections that grow,
//! strings built in pieces, trees built and torn down in an order the
//! allocator cannot predict — and never calls an allocator itself: every
//! block comes from the process's global allocator. The report runs each in
//! a fresh child process per allocator ([`crate::global`]), so the child's
//! peak RSS is the workload's on that allocator alone.
//!
//! - [`json`]: parse a generated JSON document into a `serde_json::Value`,
//!   keep a few subtrees, drop the rest and then them. One op: one JSON value.
//! - [`strings`]: build `String`s of varied lengths in pieces, sort them,
//!   drop them. One op: one string.
//! - [`btree`]: a `BTreeMap<u64, String>`, filled, then emptied in random
//!   order. One op: one insert or one remove.
//!
//! Inputs (the document, the keys and the removal order) are made before
//! the clock starts, from fixed seeds, so every allocator sees the same
//! program.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use fastrand::Rng;
use serde_json::Value;

/// The work of each real-world workload in one repetition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealWorld {
    /// Bytes of the JSON document [`json`] parses (at least).
    pub json_bytes: usize,
    /// Times [`json`] runs on the document in one repetition: one run takes
    /// tens of milliseconds, short enough for a busy machine to blur.
    pub json_rounds: usize,
    /// `String`s [`strings`] builds.
    pub strings: usize,
    /// Entries [`btree`] inserts, then removes.
    pub btree_entries: usize,
}

impl RealWorld {
    /// DESIGN.md §7's sizes: a 4 MiB document, 1M strings, 1M entries.
    pub fn full() -> RealWorld {
        RealWorld {
            json_bytes: 4 << 20,
            json_rounds: 4,
            strings: 1_000_000,
            btree_entries: 1_000_000,
        }
    }

    /// `--quick`: half the strings and entries of [`RealWorld::full`],
    /// still far beyond any cache, so that the three workloads on six
    /// allocators take about a minute on 2 cores; the same document, which
    /// takes a few seconds for all six.
    pub fn quick() -> RealWorld {
        RealWorld {
            json_bytes: 4 << 20,
            json_rounds: 4,
            strings: 500_000,
            btree_entries: 500_000,
        }
    }
}

const JSON_SEED: u64 = 0x6a73_6f6e_646f_6373; // "jsondocs"
const STRINGS_SEED: u64 = 0x7374_7269_6e67_7331; // "strings1"
const BTREE_SEED: u64 = 0x6274_7265_656d_6170; // "btreemap"

/// The records of a document whose `history` subtree [`json`] keeps: one in
/// this many.
pub const KEEP_EVERY: usize = 1_000;

/// Text that strings and JSON words are cut from: ASCII, no quote or
/// backslash, so a slice of it is a valid JSON string body.
const TEXT: &str = "the quick brown fox jumps over the lazy dog while a \
    memory cgroup charges every slab it allocates to the group that asked; \
    pack my box with five dozen liquor jugs, sphinx of black quartz judge \
    my vow, how vexingly quick daft zebras jump, the five boxing wizards \
    jump quickly and bright vixens jump while dozy fowl quack at dawn";

/// Words of the JSON document.
const WORDS: [&str; 24] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray",
];

fn word(rng: &mut Rng) -> &'static str {
    WORDS[rng.usize(..WORDS.len())]
}

/// A JSON document and the values in it.
#[derive(Clone, Debug)]
pub struct Document {
    /// The document: an array of records, each an object of about 350
    /// bytes with strings, numbers, a boolean, an array of tags, a nested
    /// object and a `history` array of small objects.
    pub text: String,
    /// JSON values in it (objects, arrays and scalars), the top-level
    /// array included.
    pub values: u64,
}

/// A document of at least `bytes` bytes, the same for the same `bytes`.
pub fn json_document(bytes: usize) -> Document {
    let mut rng = Rng::with_seed(JSON_SEED);
    let mut text = String::with_capacity(bytes + 1024);
    let mut values = 1;
    text.push('[');
    let mut id = 0u64;
    while text.len() < bytes {
        if id > 0 {
            text.push(',');
        }
        values += record(&mut text, &mut rng, id);
        id += 1;
    }
    text.push(']');
    Document { text, values }
}

/// Appends one record to `out`; returns the JSON values in it.
fn record(out: &mut String, rng: &mut Rng, id: u64) -> u64 {
    // Writing to a `String` cannot fail.
    let _ = write!(
        out,
        "{{\"id\":{id},\"name\":\"{} {}\",\"email\":\"{}.{}@{}.example\",\
         \"active\":{},\"score\":{}.{:02},\"tags\":[",
        word(rng),
        word(rng),
        word(rng),
        rng.u32(..1000),
        word(rng),
        rng.bool(),
        rng.u32(..100),
        rng.u32(..100),
    );
    // The record, id, name, email, active, score and the tags array.
    let mut values = 7;
    let tags = rng.u64(1..=6);
    for i in 0..tags {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}\"{}\"", word(rng));
    }
    values += tags;
    let _ = write!(
        out,
        "],\"address\":{{\"street\":\"{} {} street\",\"city\":\"{}\",\"zip\":\"{:05}\"}},\
         \"history\":[",
        rng.u32(..500),
        word(rng),
        word(rng),
        rng.u32(..100_000),
    );
    // The address object and its three strings, the history array.
    values += 5;
    let events = rng.u64(1..=8);
    for i in 0..events {
        let sep = if i == 0 { "" } else { "," };
        let start = rng.usize(..TEXT.len() - 40);
        let len = rng.usize(4..40);
        let _ = write!(
            out,
            "{sep}{{\"at\":{},\"event\":\"{}\",\"note\":\"{}\",\"amount\":{}.{:02}}}",
            rng.u64(1_700_000_000..1_800_000_000),
            word(rng),
            &TEXT[start..start + len],
            rng.u32(..10_000),
            rng.u32(..100),
        );
    }
    // Each event: the object and its four members.
    values += events * 5;
    out.push_str("]}");
    values
}

/// Parses `doc` into a `serde_json::Value`, takes the `history` subtree out
/// of one record in [`KEEP_EVERY`], drops the rest of the tree and then the
/// subtrees kept: a program that keeps a few parts of a request it parsed.
/// The time of all that; the document is not dropped.
pub fn json(doc: &Document) -> Duration {
    let start = Instant::now();
    let mut tree: Value = serde_json::from_str(&doc.text).expect("the generated document parses");
    let kept: Vec<Value> = tree
        .as_array_mut()
        .expect("the document is an array")
        .iter_mut()
        .step_by(KEEP_EVERY)
        .filter_map(|record| record.get_mut("history").map(Value::take))
        .collect();
    drop(black_box(tree));
    drop(black_box(kept));
    start.elapsed()
}

/// The length of a string of [`strings`]: mostly short, some medium, a few
/// long, as the strings of a program are.
fn string_len(rng: &mut Rng) -> usize {
    match rng.u32(..100) {
        0..=69 => rng.usize(1..=24),
        70..=94 => rng.usize(25..=128),
        _ => rng.usize(129..=1024),
    }
}

/// Builds `n` `String`s of [`string_len`] bytes in pieces of up to 16 bytes
/// cut from a text (so each grows as a program's does), pushes them on a
/// `Vec`, sorts it and drops it. The time of all that.
pub fn strings(n: usize) -> Duration {
    let mut rng = Rng::with_seed(STRINGS_SEED);
    let start = Instant::now();
    let mut all = Vec::new();
    for _ in 0..n {
        let len = string_len(&mut rng);
        let mut s = String::new();
        while s.len() < len {
            let piece = (len - s.len()).min(16);
            let at = rng.usize(..TEXT.len() - 16);
            s.push_str(&TEXT[at..at + piece]);
        }
        all.push(s);
    }
    all.sort();
    drop(black_box(all));
    start.elapsed()
}

/// Inserts `n` random keys, each with a `String` of 8–48 bytes, into a
/// `BTreeMap`, then removes them in another random order, dropping each
/// string as it comes out. The keys and the order are drawn before the
/// clock starts. The time of the inserts and removes.
pub fn btree(n: usize) -> Duration {
    let mut rng = Rng::with_seed(BTREE_SEED);
    let keys: Vec<u64> = (0..n).map(|_| rng.u64(..)).collect();
    let mut order = keys.clone();
    rng.shuffle(&mut order);
    let start = Instant::now();
    let mut map = BTreeMap::new();
    for &key in &keys {
        let len = rng.usize(8..=48);
        let at = rng.usize(..TEXT.len() - len);
        map.insert(key, TEXT[at..at + len].to_owned());
    }
    for key in &order {
        drop(black_box(map.remove(key)));
    }
    drop(black_box(map));
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_valid_json_with_the_values_counted() {
        let doc = json_document(64 << 10);
        assert!(doc.text.len() >= 64 << 10);
        let tree: Value = serde_json::from_str(&doc.text).unwrap();
        fn count(v: &Value) -> u64 {
            1 + match v {
                Value::Array(a) => a.iter().map(count).sum(),
                Value::Object(o) => o.values().map(count).sum(),
                _ => 0,
            }
        }
        assert_eq!(count(&tree), doc.values);
        let records = tree.as_array().unwrap();
        assert!(records.len() > 10, "{} records", records.len());
        assert!(records.iter().all(|r| r["history"].is_array()));
    }

    #[test]
    fn the_document_is_the_same_every_time() {
        assert_eq!(json_document(10_000).text, json_document(10_000).text);
    }

    #[test]
    fn string_lengths_are_varied_and_never_empty() {
        let mut rng = Rng::with_seed(STRINGS_SEED);
        let lens: Vec<usize> = (0..10_000).map(|_| string_len(&mut rng)).collect();
        assert!(lens.iter().all(|&l| (1..=1024).contains(&l)));
        assert!(lens.iter().any(|&l| l <= 24));
        assert!(lens.iter().any(|&l| l > 128));
    }

    #[test]
    fn the_workloads_run() {
        json(&json_document(256 << 10));
        strings(10_000);
        btree(10_000);
    }
}
