//! Scenarios: the built-in `churn`, `removal-cost`, `protection` and `oom`,
//! and TOML files that set any of their parameters.
//!
//! A file names its kind with `scenario = "churn"`, `"removal-cost"`,
//! `"protection"` or `"oom"`; every other key is optional and defaults to
//! the built-in's value (see `examples/*.toml`). Keys are checked strictly: an
//! unknown key, a value of the wrong type or out of range is an error that
//! names the file, the line and the key, as `FILE:LINE: cache[1].size: ...`.
//! toml reports errors with byte spans; a second, spanned parse of the same
//! text maps a span back to the key it belongs to, and a key to its line.
//!
//! A churn scenario runs with shared slab caches (S11, the library's
//! default), with isolated per-group caches (S6, the seed's design), or with
//! both, one after the other on fresh hierarchies under the same seed: the
//! key `isolated` picks one; left out, as in the built-in, both run and the
//! report compares them.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A scenario to run.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Scenario {
    /// Jobs come and go, leaving objects behind.
    Churn(Churn),
    /// Removal time against what the removed group leaves behind.
    RemovalCost(RemovalCost),
    /// A protected tenant's page cache against a growing neighbour (S13).
    Protection(Protection),
    /// A runaway tenant under one parent limit, with and without the OOM
    /// killer (S14).
    Oom(Oom),
}

impl Scenario {
    /// Scale the scenario to `rounds` (the `--rounds` option).
    pub(crate) fn set_rounds(&mut self, rounds: usize) {
        match self {
            Scenario::Churn(c) => c.rounds = rounds,
            Scenario::RemovalCost(r) => r.rounds = rounds,
            Scenario::Protection(p) => p.rounds = rounds,
            Scenario::Oom(o) => o.rounds = rounds,
        }
    }
}

/// `churn`: R rounds of mkdir, allocate on T threads, rmdir while some of
/// the objects live on (the kernel developers' 2000 mkdir/rmdir reproducer,
/// on a container host).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Churn {
    /// The kind, `churn` (a file must say it).
    pub(crate) scenario: String,
    /// Jobs: each round creates one group and removes it.
    pub(crate) rounds: usize,
    /// Threads per job, each entering the job's group.
    pub(crate) threads: usize,
    /// Sample the engine every this many rounds.
    pub(crate) sample_every: usize,
    /// Groups the jobs are created under, in turn (made with their ancestors).
    pub(crate) parents: Vec<String>,
    /// The fraction of each thread's objects, kmem buffers and anon pages
    /// that outlives its job.
    pub(crate) survive: f64,
    /// How many rounds a survivor lives after its job, drawn uniformly from
    /// `[min, max]`.
    pub(crate) lifetime: [usize; 2],
    /// The fraction of due survivors freed by the threads of the job running
    /// then (threads of another group); the simulator's own thread, in the
    /// root, frees the rest.
    pub(crate) freed_by_jobs: f64,
    /// Page-level kmem buffers each thread allocates per job.
    pub(crate) kmem: Kmem,
    /// Anon pages each thread charges per job.
    pub(crate) anon_pages: usize,
    /// The slab caches each thread allocates from (TOML: `[[cache]]`).
    #[serde(rename = "cache")]
    pub(crate) caches: Vec<CacheSpec>,
    /// The slab design: `false` runs shared caches only (S11: objects of all
    /// groups share slabs and are charged by the byte), `true` isolated
    /// caches only (S6: per-group child caches, dead after removal). Unset
    /// (the built-in): both, shared first, and the report compares them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) isolated: Option<bool>,
}

/// Page-level kmem buffers per thread and job.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Kmem {
    /// Buffers per thread and job.
    pub(crate) count: usize,
    /// Bytes per buffer, rounded up to whole pages.
    pub(crate) size: usize,
}

impl Default for Kmem {
    fn default() -> Self {
        Kmem {
            count: 4,
            size: 8192,
        }
    }
}

/// One slab cache of a churn scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheSpec {
    /// The cache's name (the library's cache is `sim/NAME`).
    pub(crate) name: String,
    /// Object size in bytes, at most 8192.
    pub(crate) size: usize,
    /// Whether reclaim may free its objects (dentries, inodes).
    #[serde(default)]
    pub(crate) reclaimable: bool,
    /// Objects each thread allocates per job.
    pub(crate) objects: usize,
}

impl Default for Churn {
    fn default() -> Self {
        let cache = |name: &str, size, reclaimable, objects| CacheSpec {
            name: name.into(),
            size,
            reclaimable,
            objects,
        };
        Churn {
            scenario: "churn".into(),
            rounds: 2000,
            threads: 2,
            sample_every: 10,
            parents: vec!["/host/batch".into(), "/host/web".into()],
            survive: 0.02,
            lifetime: [1, 400],
            freed_by_jobs: 0.5,
            kmem: Kmem::default(),
            anon_pages: 4,
            caches: vec![
                cache("dentry", 192, true, 256),
                cache("inode", 600, true, 64),
                cache("kmalloc-64", 64, false, 512),
                cache("task", 1024, false, 8),
            ],
            isolated: None,
        }
    }
}

/// `removal-cost`: the time to remove a group against how many kmem
/// objects (S8: constant) or user pages (S7: linear) it leaves behind.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RemovalCost {
    /// The kind, `removal-cost` (a file must say it).
    pub(crate) scenario: String,
    /// Repetitions of every measurement; the report gives the median.
    pub(crate) rounds: usize,
    /// Live slab objects in the removed group, one measurement each.
    pub(crate) objects: Vec<usize>,
    /// Their size in bytes.
    pub(crate) object_size: usize,
    /// Anon pages in the removed group, one measurement each.
    pub(crate) anon_pages: Vec<usize>,
}

impl Default for RemovalCost {
    fn default() -> Self {
        RemovalCost {
            scenario: "removal-cost".into(),
            rounds: 5,
            objects: vec![1, 10, 100, 1_000, 10_000, 100_000, 1_000_000],
            object_size: 64,
            anon_pages: vec![1, 10, 100, 1_000, 10_000, 100_000],
        }
    }
}

/// `protection`: a latency tenant's page cache, protected by `memory.low`,
/// by `memory.min` or not at all, against a batch neighbour that grows past
/// their parent's `memory.max` (S13). Sizes are strings as `memory.max`
/// takes them (`"256M"`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Protection {
    /// The kind, `protection` (a file must say it).
    pub(crate) scenario: String,
    /// Steps: each, the latency tenant refaults, then the batch grows.
    pub(crate) rounds: usize,
    /// `memory.max` of `/host`, the parent of both tenants.
    pub(crate) parent_max: Size,
    /// The page cache the latency tenant works on.
    pub(crate) working_set: Size,
    /// Its `memory.low` (or `memory.min`) in the protected variants.
    pub(crate) protection: Size,
    /// What the latency tenant reads back per step of its working set lost to
    /// reclaim (refaults).
    pub(crate) refault: Size,
    /// `memory.high` of the batch tenant.
    pub(crate) batch_high: Size,
    /// Anon memory the batch tenant adds per step, up to `batch_anon_max`.
    pub(crate) batch_anon: Size,
    /// The most anon memory the batch tenant holds outside its burst.
    pub(crate) batch_anon_max: Size,
    /// Page cache the batch tenant streams through per step (new pages;
    /// reclaim takes old ones).
    pub(crate) batch_file: Size,
    /// Anon memory the batch tenant takes for one step halfway through the
    /// run, past what the parent can give both tenants' protected memory.
    pub(crate) burst: Size,
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            scenario: "protection".into(),
            rounds: 40,
            parent_max: Size(256 << 20),
            working_set: Size(96 << 20),
            protection: Size(96 << 20),
            refault: Size(2 << 20),
            batch_high: Size(224 << 20),
            batch_anon: Size(8 << 20),
            batch_anon_max: Size(128 << 20),
            batch_file: Size(8 << 20),
            burst: Size(64 << 20),
        }
    }
}

/// `oom`: a runaway tenant among well-behaved ones under one parent
/// `memory.max`, without killable units, with the OOM killer, and with
/// `memory.oom.group` (S14). Sizes are strings as `memory.max` takes them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Oom {
    /// The kind, `oom` (a file must say it).
    pub(crate) scenario: String,
    /// Rounds per variant: each, every worker takes one step in turn.
    pub(crate) rounds: usize,
    /// `memory.max` of `/host`, the parent of every tenant.
    pub(crate) parent_max: Size,
    /// Well-behaved tenants (the runaway comes on top).
    pub(crate) tenants: usize,
    /// Worker threads per tenant, each in a group of its own under its
    /// tenant's (one killable unit each where the variant makes them
    /// killable). The runaway's first worker leaks; the others work as the
    /// well-behaved tenants' do.
    pub(crate) workers: usize,
    /// What a working worker keeps charged all along.
    pub(crate) resident: Size,
    /// A unit of work: charged, held for the step, freed; its size drawn
    /// per worker and round from `[min, max]`.
    pub(crate) work: [Size; 2],
    /// What the runaway's leaking worker adds per round and never frees,
    /// drawn per round from `[min, max]`.
    pub(crate) growth: [Size; 2],
    /// The size of one charge (a `KmemPages` buffer).
    pub(crate) chunk: Size,
    /// A killed worker is restarted this many rounds after it exited, by
    /// its tenant's supervisor (the simulator); 0: never.
    pub(crate) restart_after: usize,
}

impl Default for Oom {
    fn default() -> Self {
        Oom {
            scenario: "oom".into(),
            rounds: 60,
            parent_max: Size(64 << 20),
            tenants: 3,
            workers: 2,
            resident: Size(2 << 20),
            work: [Size(512 << 10), Size(2 << 20)],
            growth: [Size(2 << 20), Size(6 << 20)],
            chunk: Size(64 << 10),
            restart_after: 4,
        }
    }
}

/// A size in bytes, written as the interface files take it: `"256M"`,
/// `"512K"`, `"4096"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct Size(pub(crate) u64);

impl Size {
    /// Whole pages, rounded down.
    pub(crate) fn pages(self) -> usize {
        (self.0 / memcg::PAGE_SIZE as u64) as usize
    }
}

impl TryFrom<String> for Size {
    type Error = String;

    fn try_from(text: String) -> Result<Size, String> {
        memcg::parse_size(&text)
            .map(Size)
            .ok_or_else(|| format!("{text:?} is not a size like \"256M\", \"512K\" or \"4096\""))
    }
}

impl From<Size> for String {
    fn from(size: Size) -> String {
        match size.0 {
            0 => "0".into(),
            b if b % (1 << 20) == 0 => format!("{}M", b >> 20),
            b if b % (1 << 10) == 0 => format!("{}K", b >> 10),
            b => b.to_string(),
        }
    }
}

/// Why a scenario cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScenarioError {
    /// The file could not be read.
    #[error(
        "{file}: cannot read: {source} (built-in scenarios: churn, removal-cost, protection, oom)"
    )]
    Read {
        /// The file as named on the command line.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{file}:{line}: {field}: {message}")]
    Invalid {
        /// The file as named on the command line.
        file: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// The key, as a path: `threads`, `kmem.size`, `cache[1].name`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The scenario `arg` names: a built-in, or else a TOML file.
pub(crate) fn load(arg: &str) -> Result<Scenario, ScenarioError> {
    match arg {
        "churn" => return Ok(Scenario::Churn(Churn::default())),
        "removal-cost" => return Ok(Scenario::RemovalCost(RemovalCost::default())),
        "protection" => return Ok(Scenario::Protection(Protection::default())),
        "oom" => return Ok(Scenario::Oom(Oom::default())),
        _ => {}
    }
    let text = std::fs::read_to_string(arg).map_err(|source| ScenarioError::Read {
        file: arg.to_string(),
        source,
    })?;
    parse(arg, &text)
}

/// Parse the scenario file `file` whose content is `text`.
pub(crate) fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let doc = Doc::parse(file, text)?;
    let kind = doc.root.get_ref().get("scenario").ok_or_else(|| {
        doc.error_at(
            0,
            "scenario",
            "missing: the file must name its kind, `scenario = \"churn\"`, \
             `\"removal-cost\"`, `\"protection\"` or `\"oom\"`",
        )
    })?;
    let scenario = match kind.get_ref().as_str() {
        Some("churn") => Scenario::Churn(doc.deserialize()?),
        Some("removal-cost") => Scenario::RemovalCost(doc.deserialize()?),
        Some("protection") => Scenario::Protection(doc.deserialize()?),
        Some("oom") => Scenario::Oom(doc.deserialize()?),
        _ => {
            return Err(doc.error_at(
                kind.span().start,
                "scenario",
                "unknown kind: use \"churn\", \"removal-cost\", \"protection\" or \"oom\"",
            ))
        }
    };
    let problems = match &scenario {
        Scenario::Churn(c) => check_churn(c),
        Scenario::RemovalCost(r) => check_removal_cost(r),
        Scenario::Protection(p) => check_protection(p),
        Scenario::Oom(o) => check_oom(o),
    };
    match problems.into_iter().next() {
        Some((field, message)) => Err(doc.error_for(&field, &message)),
        None => Ok(scenario),
    }
}

/// A problem with a value: its key path and what is wrong.
type Problem = (String, String);

fn check_churn(c: &Churn) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut bad = |field: &str, message: String| p.push((field.to_string(), message));
    if c.rounds == 0 {
        bad("rounds", "must be at least 1".into());
    }
    if !(1..=64).contains(&c.threads) {
        bad("threads", format!("{} threads: use 1 to 64", c.threads));
    }
    if c.sample_every == 0 {
        bad("sample_every", "must be at least 1".into());
    }
    if c.parents.is_empty() {
        bad("parents", "name at least one group, like \"/host\"".into());
    }
    for (i, parent) in c.parents.iter().enumerate() {
        if let Err(why) = check_path(parent) {
            bad(&format!("parents[{i}]"), why);
        }
    }
    if !(0.0..=1.0).contains(&c.survive) {
        bad(
            "survive",
            format!("{} is not a fraction in [0, 1]", c.survive),
        );
    }
    if !(0.0..=1.0).contains(&c.freed_by_jobs) {
        bad(
            "freed_by_jobs",
            format!("{} is not a fraction in [0, 1]", c.freed_by_jobs),
        );
    }
    let [lo, hi] = c.lifetime;
    if lo == 0 || lo > hi || hi > 1_000_000 {
        bad(
            "lifetime",
            format!("[{lo}, {hi}]: want [min, max] rounds with 1 <= min <= max <= 1000000"),
        );
    }
    if c.kmem.count > 0 && !(1..=1 << 20).contains(&c.kmem.size) {
        bad("kmem.size", format!("{} bytes: use 1 to 1M", c.kmem.size));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, cache) in c.caches.iter().enumerate() {
        if cache.name.is_empty() || !names.insert(cache.name.as_str()) {
            bad(
                &format!("cache[{i}].name"),
                format!("{:?}: every cache needs a name of its own", cache.name),
            );
        }
        if !(1..=memcg::slab::KMALLOC_MAX).contains(&cache.size) {
            bad(
                &format!("cache[{i}].size"),
                format!(
                    "{} bytes: slab objects are 1 to {} bytes",
                    cache.size,
                    memcg::slab::KMALLOC_MAX
                ),
            );
        }
    }
    p
}

fn check_removal_cost(r: &RemovalCost) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut bad = |field: &str, message: String| p.push((field.to_string(), message));
    if r.rounds == 0 {
        bad("rounds", "must be at least 1".into());
    }
    if !(1..=memcg::slab::KMALLOC_MAX).contains(&r.object_size) {
        bad(
            "object_size",
            format!(
                "{} bytes: slab objects are 1 to {} bytes",
                r.object_size,
                memcg::slab::KMALLOC_MAX
            ),
        );
    }
    for (key, counts) in [("objects", &r.objects), ("anon_pages", &r.anon_pages)] {
        if let Some(i) = counts.iter().position(|&n| !(1..=10_000_000).contains(&n)) {
            bad(
                &format!("{key}[{i}]"),
                format!("{}: counts are 1 to 10000000", counts[i]),
            );
        }
    }
    p
}

fn check_protection(p: &Protection) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |field: &str, message: String| out.push((field.to_string(), message));
    if p.rounds == 0 {
        bad("rounds", "must be at least 1".into());
    }
    let page = memcg::PAGE_SIZE as u64;
    for (key, size) in [
        ("parent_max", p.parent_max),
        ("working_set", p.working_set),
        ("batch_high", p.batch_high),
        ("batch_file", p.batch_file),
    ] {
        if size.0 < page {
            bad(key, format!("{} bytes: at least one page", size.0));
        }
    }
    if p.parent_max.0 > 64 << 30 {
        bad("parent_max", "at most 64G (every page is simulated)".into());
    }
    if p.working_set.0 >= p.parent_max.0 {
        bad(
            "working_set",
            "must fit under parent_max with room for the batch".into(),
        );
    }
    if p.batch_anon_max.0 >= p.parent_max.0 {
        bad(
            "batch_anon_max",
            "must stay under parent_max: anon memory cannot be reclaimed".into(),
        );
    }
    out
}

fn check_oom(o: &Oom) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |field: &str, message: String| out.push((field.to_string(), message));
    if o.rounds == 0 {
        bad("rounds", "must be at least 1".into());
    }
    if !(1..=16).contains(&o.tenants) {
        bad("tenants", format!("{} tenants: use 1 to 16", o.tenants));
    }
    if !(1..=8).contains(&o.workers) {
        bad("workers", format!("{} workers: use 1 to 8", o.workers));
    }
    let page = memcg::PAGE_SIZE as u64;
    if !(page..=16 << 20).contains(&o.chunk.0) {
        bad(
            "chunk",
            format!("{} bytes: use one page (4K) to 16M", o.chunk.0),
        );
    }
    if o.parent_max.0 > 4 << 30 {
        bad("parent_max", "at most 4G (every byte is allocated)".into());
    }
    for (key, [lo, hi]) in [("work", o.work), ("growth", o.growth)] {
        if lo.0 < o.chunk.0 || lo.0 > hi.0 {
            bad(
                key,
                format!(
                    "[{}, {}]: want [min, max] with chunk ({}) <= min <= max",
                    String::from(lo),
                    String::from(hi),
                    String::from(o.chunk)
                ),
            );
        }
    }
    // The OOM killer takes the largest group: the runaway must be able to
    // outgrow every worker that works, so theirs must leave it half.
    let steady = (o.tenants * o.workers + o.workers - 1) as u64;
    if steady.saturating_mul(o.resident.0 + o.work[1].0) > o.parent_max.0 / 2 {
        bad(
            "resident",
            format!(
                "{steady} working workers holding resident + work max ({} + {}) must fit in half                  of parent_max ({}), so that the runaway outgrows them",
                String::from(o.resident),
                String::from(o.work[1]),
                String::from(o.parent_max)
            ),
        );
    }
    out
}

/// A parent path the way `mkdir` takes it: absolute, not the root, names of
/// `[A-Za-z0-9_.-]`.
fn check_path(path: &str) -> Result<(), String> {
    let ok = path.len() > 1
        && path.starts_with('/')
        && path[1..].split('/').all(|name| {
            !name.is_empty()
                && name != "."
                && name != ".."
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not a group path like \"/host/batch\" (names of A-Z a-z 0-9 _ . -)"
        ))
    }
}

/// A scenario file, parsed once with spans to name keys and lines.
struct Doc<'a> {
    file: &'a str,
    text: &'a str,
    root: Spanned<DeTable<'a>>,
    /// Every key of the document: its path, its span and its value's span.
    keys: Vec<(String, Range<usize>, Range<usize>)>,
}

impl<'a> Doc<'a> {
    fn parse(file: &'a str, text: &'a str) -> Result<Doc<'a>, ScenarioError> {
        let root = DeTable::parse(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            ScenarioError::Invalid {
                file: file.into(),
                line: line_of(text, at),
                field: "syntax".into(),
                message: e.message().trim().to_string(),
            }
        })?;
        let mut keys = Vec::new();
        collect_keys(root.get_ref(), "", &mut keys);
        Ok(Doc {
            file,
            text,
            root,
            keys,
        })
    }

    /// Deserialize the whole document into `T`, naming the key of an error.
    fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ScenarioError> {
        toml::from_str(self.text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let field = self.key_at(at);
            self.error_at(at, &field, e.message().trim())
        })
    }

    /// The innermost key whose name or value covers byte `at`, or `(top
    /// level)`.
    fn key_at(&self, at: usize) -> String {
        self.keys
            .iter()
            .filter(|(_, key, value)| key.contains(&at) || value.contains(&at))
            .min_by_key(|(_, key, value)| {
                // The innermost: the narrowest value (a key's own name wins).
                if key.contains(&at) {
                    0
                } else {
                    value.len()
                }
            })
            .map_or_else(|| "(top level)".into(), |(path, _, _)| path.clone())
    }

    fn error_at(&self, at: usize, field: &str, message: &str) -> ScenarioError {
        ScenarioError::Invalid {
            file: self.file.into(),
            line: line_of(self.text, at),
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about the key `field`, at its line (or the line of the
    /// nearest enclosing key the file has, for a defaulted one).
    fn error_for(&self, field: &str, message: &str) -> ScenarioError {
        let mut path = field;
        let at = loop {
            if let Some((_, key, _)) = self.keys.iter().find(|(p, _, _)| p == path) {
                break key.start;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => break 0,
            }
        };
        self.error_at(at, field, message)
    }
}

/// Record every key under `table` (paths start with `prefix`).
fn collect_keys(
    table: &DeTable<'_>,
    prefix: &str,
    out: &mut Vec<(String, Range<usize>, Range<usize>)>,
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.push((path.clone(), key.span(), value.span()));
        collect_value(value.get_ref(), &path, out);
    }
}

fn collect_value(
    value: &DeValue<'_>,
    path: &str,
    out: &mut Vec<(String, Range<usize>, Range<usize>)>,
) {
    match value {
        DeValue::Table(t) => collect_keys(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.push((item_path.clone(), item.span(), item.span()));
                collect_value(item.get_ref(), &item_path, out);
            }
        }
        _ => {}
    }
}

/// The 1-based line of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse("s.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn a_file_sets_some_keys_and_defaults_the_rest() {
        let s = parse("s.toml", "scenario = \"churn\"\nthreads = 3\n").unwrap();
        let Scenario::Churn(c) = s else {
            panic!("a churn scenario")
        };
        assert_eq!(c.threads, 3);
        assert_eq!(c.rounds, Churn::default().rounds);
        assert_eq!(c.isolated, None, "both designs unless the file picks one");
        let s = parse("s.toml", "scenario = \"churn\"\nisolated = true\n").unwrap();
        let Scenario::Churn(c) = s else {
            panic!("a churn scenario")
        };
        assert_eq!(c.isolated, Some(true));
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        assert_eq!(
            error("scenario = \"churn\"\n\nthreads = \"two\"\n"),
            "s.toml:3: threads: invalid type: string \"two\", expected usize"
        );
        let unknown = error("scenario = \"churn\"\nthread = 2\n");
        assert!(
            unknown.starts_with("s.toml:2: thread: unknown field `thread`"),
            "{unknown}"
        );
        let nested = error(
            "scenario = \"churn\"\n[[cache]]\nname = \"a\"\nsize = 8\nobjects = 1\n\
             [[cache]]\nname = \"b\"\nsize = 9000\nobjects = 1\n",
        );
        assert!(
            nested.starts_with("s.toml:8: cache[1].size: 9000 bytes"),
            "{nested}"
        );
        let missing = error("scenario = \"churn\"\n[[cache]]\nname = \"a\"\nobjects = 1\n");
        assert!(missing.contains("missing field `size`"), "{missing}");
        assert!(missing.starts_with("s.toml:2: cache[0]"), "{missing}");
        assert!(error("threads = 2\n").starts_with("s.toml:1: scenario: missing"));
        assert!(error("scenario = \"x\"\n").starts_with("s.toml:1: scenario: unknown kind"));
        assert!(error("scenario = \"churn\"\nthreads = \n").starts_with("s.toml:2: syntax:"));
    }

    #[test]
    fn protection_sizes_are_written_as_memory_max_takes_them() {
        let s = parse(
            "s.toml",
            "scenario = \"protection\"\nparent_max = \"512M\"\nrefault = \"256K\"\n",
        )
        .unwrap();
        let Scenario::Protection(p) = s else {
            panic!("a protection scenario")
        };
        assert_eq!(
            (p.parent_max, p.refault),
            (Size(512 << 20), Size(256 << 10))
        );
        assert_eq!(p.working_set, Protection::default().working_set);
        assert_eq!(String::from(p.refault), "256K");
        let bad = error("scenario = \"protection\"\n\nburst = \"lots\"\n");
        assert!(
            bad.starts_with("s.toml:3: burst: \"lots\" is not a size"),
            "{bad}"
        );
        let big = error("scenario = \"protection\"\nworking_set = \"1G\"\n");
        assert!(big.starts_with("s.toml:2: working_set: must fit"), "{big}");
    }

    #[test]
    fn oom_ranges_are_checked_against_the_chunk_and_the_limit() {
        let s = parse("s.toml", "scenario = \"oom\"\nwork = [\"64K\", \"1M\"]\n").unwrap();
        let Scenario::Oom(o) = s else {
            panic!("an oom scenario")
        };
        assert_eq!(o.work, [Size(64 << 10), Size(1 << 20)]);
        assert_eq!(o.parent_max, Oom::default().parent_max);
        let small = error("scenario = \"oom\"\ngrowth = [\"4K\", \"1M\"]\n");
        assert!(small.starts_with("s.toml:2: growth: [4K, 1M]"), "{small}");
        let crowded = error("scenario = \"oom\"\n\nparent_max = \"16M\"\n");
        assert!(crowded.contains(": resident: "), "{crowded}");
    }
}
