//! The `prometheus` feature: `memcg::metrics` reports every online group's
//! interface files (DESIGN.md §4) as OpenMetrics series, read at scrape time.
//! The text is checked by a strict parser of the OpenMetrics text format
//! written here, and its values against [`Group::read`].
#![cfg(feature = "prometheus")]

use memcg::{Group, Hierarchy, KmemPages, PageKind, UserPage};
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------
// A strict parser of the OpenMetrics text format, for what prometheus-client
// writes: `# HELP`, `# TYPE`, `# UNIT` lines before a family's samples,
// `name{label="value",...} value` samples, and a final `# EOF`.

#[derive(Debug, Default)]
struct Family {
    kind: String,
    unit: Option<String>,
    help: Option<String>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parse `text`, or say which line is not valid OpenMetrics: metadata after
/// a family's samples, a family declared twice or without a TYPE, a sample
/// outside the current family (or with a name its type does not allow), a
/// label set repeated, a missing `# EOF`.
fn try_parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition does not end with \"# EOF\\n\"")?;
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        let fail = |why: &str| format!("{why}: {line:?}");
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
                return Err(fail("malformed metadata"));
            };
            let rest = parts.next().unwrap_or("");
            check_name(name).map_err(fail)?;
            if current.as_deref() != Some(name) {
                if families.contains_key(name) {
                    return Err(fail("family declared twice or interleaved"));
                }
                families.insert(name.to_string(), Family::default());
                current = Some(name.to_string());
            }
            let f = families.get_mut(name).unwrap();
            if !f.samples.is_empty() {
                return Err(fail("metadata after the family's samples"));
            }
            match what {
                "HELP" if f.help.is_none() => f.help = Some(rest.to_string()),
                "TYPE" if f.kind.is_empty() => {
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "stateset",
                        "info",
                        "summary",
                        "unknown",
                    ];
                    if !known.contains(&rest) {
                        return Err(fail("unknown metric type"));
                    }
                    f.kind = rest.to_string();
                }
                "UNIT" if f.unit.is_none() => {
                    if !name.ends_with(&format!("_{rest}")) {
                        return Err(fail("a family with a unit must end with _<unit>"));
                    }
                    f.unit = Some(rest.to_string());
                }
                _ => return Err(fail("unknown or repeated metadata")),
            }
            continue;
        }
        let sample = parse_sample(line).map_err(fail)?;
        let family = current
            .as_deref()
            .ok_or_else(|| fail("a sample before any family"))?;
        let f = families.get_mut(family).unwrap();
        let allowed = match f.kind.as_str() {
            "" => return Err(fail("a sample of a family without TYPE")),
            "counter" => sample.name == format!("{family}_total"),
            "gauge" | "unknown" => sample.name == family,
            _ => return Err(fail("a type this parser does not expect")),
        };
        if !allowed {
            return Err(fail("the sample does not belong to the current family"));
        }
        if f.samples.iter().any(|s| s.labels == sample.labels) {
            return Err(fail("a label set repeated within its family"));
        }
        f.samples.push(sample);
    }
    Ok(families)
}

/// [`try_parse`], failing the test on invalid text.
fn parse(text: &str) -> BTreeMap<String, Family> {
    try_parse(text).unwrap_or_else(|e| panic!("not OpenMetrics: {e}\n{text}"))
}

/// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels without `:`).
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut bytes = name.bytes();
    let first = bytes.next().ok_or("empty name")?;
    if !(first.is_ascii_alphabetic() || first == b'_' || first == b':')
        || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        return Err("invalid name");
    }
    Ok(())
}

/// `name{k="v",...} value`, with `\\`, `\"` and `\n` escapes in values.
fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut l) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = l.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = l.find('=').ok_or("a label without '='")?;
            let key = &l[..eq];
            if key.contains(':') {
                return Err("a label name with ':'");
            }
            check_name(key)?;
            l = l[eq + 1..]
                .strip_prefix('"')
                .ok_or("an unquoted label value")?;
            let mut value = String::new();
            let mut chars = l.char_indices();
            let end = loop {
                match chars.next().ok_or("an unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("a dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return Err("an unknown escape"),
                    },
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(key.to_string(), value).is_some() {
                return Err("a label repeated");
            }
            l = &l[end + 1..];
            if let Some(after) = l.strip_prefix(',') {
                l = after;
                if l.starts_with('}') {
                    return Err("a trailing ','");
                }
            } else if !l.starts_with('}') {
                return Err("labels not separated by ','");
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.contains(' ') {
        return Err("something after the value (timestamps and exemplars are not expected)");
    }
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| "a value that is not a number")?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The value of the sample of `family` with exactly `labels`, if there is one.
/// Values are bytes or counts: integers, exact in an f64 below 2^53.
fn value(
    families: &BTreeMap<String, Family>,
    family: &str,
    labels: &[(&str, &str)],
) -> Option<u64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let f = families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"));
    let s = f.samples.iter().find(|s| s.labels == want)?;
    assert_eq!(s.value.fract(), 0.0, "{family}{labels:?} is not an integer");
    Some(s.value as u64)
}

/// The groups that have at least one sample in `family`.
fn groups_in(families: &BTreeMap<String, Family>, family: &str) -> BTreeSet<String> {
    families[family]
        .samples
        .iter()
        .map(|s| s.labels["group"].clone())
        .collect()
}

// ---------------------------------------------------------------------------
// The hierarchy under test.

/// `/tenants/acme` holds 10 kmem pages and 2 anon pages, `/tenants/globex`
/// 3 kmem pages; acme's `memory.max` is 64K and globex's `memory.high` 1M.
struct Tenants {
    h: Hierarchy,
    _memory: (Vec<KmemPages>, Vec<UserPage>),
}

fn tenants() -> Tenants {
    let h = Hierarchy::new();
    h.create("/tenants").unwrap();
    let acme = h.create("/tenants/acme").unwrap();
    let globex = h.create("/tenants/globex").unwrap();
    acme.write("memory.max", "64K").unwrap();
    globex.write("memory.high", "1M").unwrap();
    let (mut kmem, anon) = on_thread_in(&acme, || {
        let kmem: Vec<_> = (0..10).map(|_| KmemPages::alloc(4096).unwrap()).collect();
        let anon: Vec<_> = (0..2)
            .map(|_| UserPage::charge(PageKind::Anon).unwrap())
            .collect();
        (kmem, anon)
    });
    kmem.extend(on_thread_in(&globex, || {
        (0..3)
            .map(|_| KmemPages::alloc(4096).unwrap())
            .collect::<Vec<_>>()
    }));
    h.quiesce();
    Tenants {
        h,
        _memory: (kmem, anon),
    }
}

/// Run `f` on a thread attached to `group`, which then ends.
fn on_thread_in<T: Send + 'static>(group: &Group, f: impl FnOnce() -> T + Send + 'static) -> T {
    let group = group.clone();
    std::thread::spawn(move || {
        let _in = group.enter().unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Charge acme past its `memory.max` (64K = 16 pages; it holds 12): a `max`
/// and an `oom` event on acme and, in `memory.events`, on /tenants.
fn hit_acme_limit(t: &Tenants) -> Vec<KmemPages> {
    let acme = t.h.get("/tenants/acme").unwrap();
    let pages = on_thread_in(&acme, || {
        (0..8)
            .map_while(|_| KmemPages::alloc(4096).ok())
            .collect::<Vec<_>>()
    });
    assert_eq!(pages.len(), 4, "acme's limit stops the fifth page");
    t.h.quiesce();
    pages
}

fn read_u64(g: &Group, file: &str) -> Option<u64> {
    g.read(file).ok()?.trim().parse().ok()
}

fn keyed(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

// ---------------------------------------------------------------------------

/// The text is OpenMetrics: every sample belongs to a declared family, the
/// families are the six documented ones with their types and units, and it
/// ends with `# EOF`.
#[test]
fn text_parses_as_openmetrics() {
    let t = tenants();
    let _over = hit_acme_limit(&t);
    let text = memcg::metrics::encode(&t.h);
    let families = parse(&text);
    let declared: Vec<_> = families
        .iter()
        .map(|(n, f)| (n.as_str(), f.kind.as_str(), f.unit.as_deref()))
        .collect();
    assert_eq!(
        declared,
        [
            ("memcg_memory_current_bytes", "gauge", Some("bytes")),
            ("memcg_memory_events", "counter", None),
            ("memcg_memory_high_bytes", "gauge", Some("bytes")),
            ("memcg_memory_max_bytes", "gauge", Some("bytes")),
            ("memcg_memory_peak_bytes", "gauge", Some("bytes")),
            ("memcg_memory_stat_bytes", "gauge", Some("bytes")),
        ]
    );
    assert!(families.values().all(|f| f.help.is_some()));
    assert!(text.contains("\nmemcg_memory_events_total{group=\"/tenants/acme\",event=\"max\"} "));
}

/// The parser above rejects what is not OpenMetrics, so the test above can
/// fail.
#[test]
fn the_parser_rejects_malformed_text() {
    let good = "# HELP a_bytes x\n# TYPE a_bytes gauge\n# UNIT a_bytes bytes\na_bytes{group=\"/\"} 1\n# EOF\n";
    assert_eq!(parse(good)["a_bytes"].samples.len(), 1);
    for bad in [
        "# TYPE a gauge\na 1\n",                                        // no # EOF
        "a 1\n# EOF\n",                                                 // no family
        "# TYPE a gauge\nb 1\n# EOF\n",                                 // foreign sample
        "# TYPE a counter\na 1\n# EOF\n",                               // counter without _total
        "# TYPE a gauge\na{g=\"x\"} 1\na{g=\"x\"} 2\n# EOF\n",          // repeated label set
        "# TYPE a gauge\na 1\n# HELP a late\n# EOF\n",                  // metadata after samples
        "# TYPE a gauge\n# UNIT a bytes\na 1\n# EOF\n",                 // unit not in the name
        "# TYPE a gauge\na{g=\"x} 1\n# EOF\n",                          // unterminated value
        "# TYPE a gauge\na one\n# EOF\n",                               // not a number
        "# TYPE a gauge\na 1\n# TYPE b gauge\n# TYPE a gauge\n# EOF\n", // declared twice
    ] {
        assert!(try_parse(bad).is_err(), "accepted {bad:?}");
    }
}

/// Each series equals what `Group::read` prints for its file, for every
/// online group, and every `memory.stat` key has its series.
#[test]
fn series_equal_the_interface_files() {
    let t = tenants();
    let _over = hit_acme_limit(&t);
    let families = parse(&memcg::metrics::encode(&t.h));
    for g in t.h.groups() {
        let path = g.path();
        let group = [("group", path.as_str())];
        for (file, family) in [
            ("memory.current", "memcg_memory_current_bytes"),
            ("memory.max", "memcg_memory_max_bytes"),
            ("memory.high", "memcg_memory_high_bytes"),
            ("memory.peak", "memcg_memory_peak_bytes"),
        ] {
            assert_eq!(
                value(&families, family, &group),
                read_u64(&g, file),
                "{family} of {path}"
            );
        }
        let stat = keyed(&g.read("memory.stat").unwrap());
        assert!(stat.iter().any(|(k, _)| k == "slab_unreclaimable"));
        for (key, bytes) in &stat {
            let labels = [("group", path.as_str()), ("key", key.as_str())];
            assert_eq!(
                value(&families, "memcg_memory_stat_bytes", &labels),
                Some(*bytes),
                "memory.stat {key} of {path}"
            );
        }
        let series = families["memcg_memory_stat_bytes"]
            .samples
            .iter()
            .filter(|s| s.labels["group"] == path)
            .count();
        assert_eq!(series, stat.len(), "stat series of {path}");
    }
    // The numbers the charges above make, not only equal to the files.
    let acme = [("group", "/tenants/acme")];
    let current = |l: &[(&str, &str)]| value(&families, "memcg_memory_current_bytes", l);
    assert_eq!(current(&acme), Some(16 * 4096));
    assert_eq!(current(&[("group", "/tenants/globex")]), Some(3 * 4096));
    assert_eq!(current(&[("group", "/tenants")]), Some(19 * 4096));
    let anon = [("group", "/tenants/acme"), ("key", "anon")];
    assert_eq!(
        value(&families, "memcg_memory_stat_bytes", &anon),
        Some(2 * 4096)
    );
}

/// Every online group has its series; the root has only `memory.current`
/// and `memory.stat`, as it has no other files.
#[test]
fn every_group_has_series_and_the_root_only_current_and_stat() {
    let t = tenants();
    let families = parse(&memcg::metrics::encode(&t.h));
    let all: BTreeSet<String> = t.h.paths().into_iter().collect();
    let children: BTreeSet<String> = all.iter().filter(|p| *p != "/").cloned().collect();
    assert_eq!(all.len(), 4);
    assert_eq!(groups_in(&families, "memcg_memory_current_bytes"), all);
    assert_eq!(groups_in(&families, "memcg_memory_stat_bytes"), all);
    assert_eq!(groups_in(&families, "memcg_memory_peak_bytes"), children);
    assert_eq!(groups_in(&families, "memcg_memory_events"), children);
}

/// A limit set to `max` has no series; a set one has its bytes.
#[test]
fn unlimited_limits_have_no_series() {
    let t = tenants();
    let families = parse(&memcg::metrics::encode(&t.h));
    let only = |p: &str| BTreeSet::from([p.to_string()]);
    assert_eq!(
        groups_in(&families, "memcg_memory_max_bytes"),
        only("/tenants/acme")
    );
    assert_eq!(
        groups_in(&families, "memcg_memory_high_bytes"),
        only("/tenants/globex")
    );
    assert_eq!(
        value(
            &families,
            "memcg_memory_max_bytes",
            &[("group", "/tenants/acme")]
        ),
        Some(64 * 1024)
    );
    t.h.write("/tenants/acme", "memory.max", "max").unwrap();
    let families = parse(&memcg::metrics::encode(&t.h));
    assert!(groups_in(&families, "memcg_memory_max_bytes").is_empty());
    assert!(
        families["memcg_memory_max_bytes"].kind == "gauge",
        "still declared"
    );
}

/// `memcg_memory_events_total` counts as `memory.events` does: hierarchical,
/// so the `max` and `oom` that acme's limit counted show on /tenants too.
#[test]
fn event_counters_match_memory_events() {
    let t = tenants();
    let _over = hit_acme_limit(&t);
    let families = parse(&memcg::metrics::encode(&t.h));
    for g in t.h.groups().into_iter().filter(|g| g.path() != "/") {
        let path = g.path();
        let from_file = keyed(&g.read("memory.events").unwrap());
        let from_api: Vec<_> = g.events().iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(from_file, from_api);
        for (event, count) in from_file {
            let labels = [("group", path.as_str()), ("event", event.as_str())];
            assert_eq!(
                value(&families, "memcg_memory_events", &labels),
                Some(count),
                "{event} of {path}"
            );
        }
    }
    let acme = t.h.get("/tenants/acme").unwrap().events();
    assert!(acme.max >= 1 && acme.oom >= 1, "{acme:?}");
    assert_eq!(t.h.get("/tenants").unwrap().events(), acme);
    assert_eq!(t.h.get("/tenants/globex").unwrap().events().oom, 0);
}

/// A removed group's series are gone from the next scrape: the collector
/// keeps no list of its own.
#[test]
fn removed_groups_disappear() {
    let t = tenants();
    let collector = memcg::metrics::Collector::new(t.h.clone());
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(collector));
    let scrape = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        parse(&text)
    };
    assert!(groups_in(&scrape(), "memcg_memory_current_bytes").contains("/tenants/globex"));
    t.h.remove("/tenants/globex").unwrap();
    let families = scrape();
    for (name, f) in &families {
        assert!(
            f.samples
                .iter()
                .all(|s| s.labels["group"] != "/tenants/globex"),
            "{name} still reports the removed group"
        );
    }
    assert!(groups_in(&families, "memcg_memory_current_bytes").contains("/tenants/acme"));
}

/// Values are read at scrape time: a charge between two scrapes of one
/// registered collector shows in the second.
#[test]
fn values_are_read_at_scrape_time() {
    let t = tenants();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(memcg::metrics::Collector::new(t.h.clone())));
    let globex_current = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        value(
            &parse(&text),
            "memcg_memory_current_bytes",
            &[("group", "/tenants/globex")],
        )
    };
    assert_eq!(globex_current(), Some(3 * 4096));
    let globex = t.h.get("/tenants/globex").unwrap();
    let more = on_thread_in(&globex, || KmemPages::alloc(5 * 4096).unwrap());
    t.h.quiesce();
    assert_eq!(globex_current(), Some(8 * 4096));
    drop(more);
    t.h.quiesce();
    assert_eq!(globex_current(), Some(3 * 4096));
}

/// A thread attached to a group of the hierarchy can scrape it (no lock of
/// the hierarchy is held while the text is formatted).
#[test]
fn a_thread_inside_a_group_can_scrape() {
    let t = tenants();
    let acme = t.h.get("/tenants/acme").unwrap();
    let h = t.h.clone();
    let text = on_thread_in(&acme, move || {
        let _pages = KmemPages::alloc(4096).unwrap();
        memcg::metrics::encode(&h)
    });
    let families = parse(&text);
    assert_eq!(groups_in(&families, "memcg_memory_current_bytes").len(), 4);
}
