//! The service over real HTTP: each test starts it on 127.0.0.1 with an
//! ephemeral port, in a multi-thread tokio runtime, with memcg as the global
//! allocator, and drives it from concurrent client tasks (issue item 8).
//!
//! Tests run in parallel in this one process and share `memcg::global()`;
//! each keeps its tenants under a parent group of its own, so one test's
//! numbers are not another's. Exact numbers are read after
//! `Hierarchy::quiesce`, which drains every thread's charge stock, once the
//! workers are idle: they return their object stocks when they park (see
//! `memcg_service::runtime`), a moment after the last response.

use bytes::Bytes;
use memcg_service::client::Client;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

mod common;
use common::*;

/// A value whose bytes tell its tenant, key and size apart.
fn value(tenant: &str, key: &str, len: usize) -> Bytes {
    let seed = tenant
        .bytes()
        .chain(key.bytes())
        .fold(len as u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    Bytes::from(
        (0..len)
            .map(|i| seed.wrapping_add(i as u8))
            .collect::<Vec<u8>>(),
    )
}

/// Value sizes: exact slab classes (1–8 KiB) and whole pages (16 KiB), so
/// that what a value is charged is its length (plus its 8-byte object
/// vector entry), and the 10% tolerance is left to the map and the keys.
const SIZES: [usize; 6] = [1024, 2048, 3072, 4096, 8192, 16384];

/// Fill tenants concurrently: task `t` of `tasks` writes the keys
/// `k{i}` with `i % tasks == t` of every tenant, then overwrites every
/// third key with another size and evicts every fifth. Returns each
/// tenant's stored values, as the service must hold them.
async fn fill(
    addr: SocketAddr,
    tenants: &[&str],
    keys: usize,
    tasks: usize,
) -> HashMap<String, BTreeMap<String, Bytes>> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let tenants: Vec<String> = tenants.iter().map(|s| s.to_string()).collect();
        handles.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await.unwrap();
            let mut stored: HashMap<String, BTreeMap<String, Bytes>> = HashMap::new();
            for i in (t..keys).step_by(tasks) {
                for (n, tenant) in tenants.iter().enumerate() {
                    let key = format!("k{i}");
                    let path = format!("/tenants/{tenant}/values/{key}");
                    let mut len = SIZES[(i + n) % SIZES.len()];
                    let mut v = value(tenant, &key, len);
                    assert_eq!(c.put(&path, v.clone()).await.unwrap().0, 204, "{path}");
                    if i % 3 == 0 {
                        len = SIZES[(i + n + 1) % SIZES.len()];
                        v = value(tenant, &key, len);
                        assert_eq!(c.put(&path, v.clone()).await.unwrap().0, 204, "{path}");
                    }
                    let map = stored.entry(tenant.clone()).or_default();
                    if i % 5 == 0 {
                        assert_eq!(c.delete(&path).await.unwrap().0, 204, "{path}");
                    } else {
                        map.insert(key, v);
                    }
                }
            }
            stored
        }));
    }
    let mut all: HashMap<String, BTreeMap<String, Bytes>> = HashMap::new();
    for handle in handles {
        for (tenant, values) in handle.await.unwrap() {
            all.entry(tenant).or_default().extend(values);
        }
    }
    all
}

fn stored_bytes(values: &BTreeMap<String, Bytes>) -> u64 {
    values.values().map(|v| v.len() as u64).sum()
}

fn assert_close(what: &str, got: u64, want: u64, percent: u64) {
    let diff = got.abs_diff(want);
    assert!(
        diff * 100 <= want * percent,
        "{what}: memory.current {got} is not within {percent}% of the {want} stored bytes"
    );
}

/// Read back every stored value, from concurrent tasks.
async fn check_values(addr: SocketAddr, tenant: &str, values: &BTreeMap<String, Bytes>) {
    let values: Vec<(String, Bytes)> = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut handles = Vec::new();
    for chunk in values.chunks(values.len().div_ceil(4).max(1)) {
        let (chunk, tenant) = (chunk.to_vec(), tenant.to_string());
        handles.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await.unwrap();
            for (key, v) in chunk {
                let (status, body) = c
                    .get(&format!("/tenants/{tenant}/values/{key}"))
                    .await
                    .unwrap();
                assert_eq!((status.as_u16(), body), (200, v), "{tenant}/{key}");
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
}

/// Each tenant's `memory.current` tracks the bytes of the values it stores
/// (within 10%), though its requests ran on whichever worker polled them
/// (S12), next to other tenants' on the same workers.
#[test]
fn tenant_memory_tracks_its_stored_bytes() {
    run(tenant_memory_tracks_its_stored_bytes_async());
}

async fn tenant_memory_tracks_its_stored_bytes_async() {
    let addr = start("/track").await;
    let mut c = Client::connect(addr).await.unwrap();
    let tenants = ["acme", "globex", "initech"];
    for t in tenants {
        create(&mut c, t, "").await;
    }
    let stored = fill(addr, &tenants, 600, 6).await;
    for t in tenants {
        check_values(addr, t, &stored[t]).await;
    }
    h().quiesce();
    for t in tenants {
        let want = stored_bytes(&stored[t]);
        assert!(want > 1 << 20, "{t}: MiBs stored, not {want}");
        assert_close(t, current(&format!("/track/{t}")), want, 10);
        let (status, stats) = c.get(&format!("/tenants/{t}/stats")).await.unwrap();
        assert_eq!(status, 200);
        let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
        assert_eq!(stats["stored_bytes"], want);
        assert_eq!(stats["values"], stored[t].len());
    }
    // The parent holds exactly its children: the service's own bookkeeping
    // (tenant table, connections) is not charged under it.
    let children: u64 = tenants
        .iter()
        .map(|t| current(&format!("/track/{t}")))
        .sum();
    assert_eq!(current("/track"), children);

    // Evicted, a tenant's values leave nothing charged: not even the
    // response headers hyper keeps per connection (rebuilt out of the group).
    assert_eq!(c.delete("/tenants/acme/values").await.unwrap().0, 204);
    let acme = || current("/track/acme");
    assert_eq!(settled(0, acme).await, 0);
}

/// A deleted tenant's group is removed and freed at once (S1); its values
/// are still served, their bytes now charged to `/tenants`, and they leave
/// it as the values are evicted, down to exactly 0 (S2).
#[test]
fn deleted_tenant_bytes_move_to_tenants_until_evicted() {
    run(deleted_tenant_bytes_move_to_tenants_until_evicted_async());
}

async fn deleted_tenant_bytes_move_to_tenants_until_evicted_async() {
    let addr = start("/tenants").await;
    let mut c = Client::connect(addr).await.unwrap();
    create(&mut c, "keep", "").await;
    create(&mut c, "gone", "?max=64M&high=48M").await;
    let stored = fill(addr, &["keep", "gone"], 400, 4).await;
    let gone = &stored["gone"];
    h().quiesce();
    let tenants_before = current("/tenants");
    let gone_before = current("/tenants/gone");
    assert_close("gone", gone_before, stored_bytes(gone), 10);

    assert_eq!(c.delete("/tenants/gone").await.unwrap().0, 204);
    assert!(h().get("/tenants/gone").is_err(), "the group is removed");
    assert_eq!(
        h().read("/tenants", "cgroup.stat").unwrap(),
        "nr_descendants 1\nnr_dying_descendants 0\n",
        "no handle keeps the removed group dying"
    );
    // Nothing was freed: the parent carries the deleted tenant's bytes.
    let tenants = || current("/tenants");
    assert_eq!(settled(tenants_before, tenants).await, tenants_before);
    let carried = || current("/tenants") - current("/tenants/keep");
    assert_eq!(carried(), gone_before);
    let parent = h().get("/tenants").unwrap();
    assert_eq!(parent.reparented_contexts(), 1, "gone's kmem context");

    // Still served, and read by concurrent clients.
    check_values(addr, "gone", gone).await;
    let (status, stats) = c.get("/tenants/gone/stats").await.unwrap();
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(
        (&stats["deleted"], &stats["values"]),
        (&true.into(), &gone.len().into())
    );
    // A write to a deleted tenant finds none.
    let (status, _) = c
        .put("/tenants/gone/values/new", value("gone", "new", 64))
        .await
        .unwrap();
    assert_eq!(status, 404);

    // Evicted by concurrent clients, half of them first.
    let keys: Vec<String> = gone.keys().cloned().collect();
    let evict = |keys: Vec<String>| async move {
        let mut handles = Vec::new();
        for chunk in keys.chunks(keys.len().div_ceil(4).max(1)) {
            let chunk = chunk.to_vec();
            handles.push(tokio::spawn(async move {
                let mut c = Client::connect(addr).await.unwrap();
                for key in chunk {
                    let path = format!("/tenants/gone/values/{key}");
                    assert_eq!(c.delete(&path).await.unwrap().0, 204, "{path}");
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
    };
    let (first, rest) = keys.split_at(keys.len() / 2);
    evict(first.to_vec()).await;
    h().quiesce();
    let half: BTreeMap<String, Bytes> = gone
        .iter()
        .filter(|(k, _)| rest.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_close("gone, half evicted", carried(), stored_bytes(&half), 10);
    evict(rest.to_vec()).await;
    assert_eq!(
        settled(0, carried).await,
        0,
        "every byte of the deleted tenant is uncharged"
    );
    assert_eq!(parent.reparented_contexts(), 0, "and its context is gone");
    assert_eq!(c.get("/tenants/gone/stats").await.unwrap().0, 404);
    // The live tenant was not touched.
    check_values(addr, "keep", &stored["keep"]).await;
}

/// A tenant over its `memory.high` gets 503 for its writes — decided from
/// its `high` events, while every allocation succeeded (no `max` or `oom`
/// event) — while other tenants are served; evicting its values serves it
/// again.
#[test]
fn tenant_over_high_gets_503_while_others_are_served() {
    run(tenant_over_high_gets_503_while_others_are_served_async());
}

async fn tenant_over_high_gets_503_while_others_are_served_async() {
    const HIGH: u64 = 512 << 10;
    let addr = start("/high").await;
    let mut c = Client::connect(addr).await.unwrap();
    create(&mut c, "hog", "?high=512K&max=64M").await;
    create(&mut c, "calm", "?high=64M").await;
    create(&mut c, "quiet", "").await;

    let hog = tokio::spawn(async move {
        let mut c = Client::connect(addr).await.unwrap();
        // (stored bytes before the write, status, Retry-After present)
        let mut writes = Vec::new();
        let mut stored = 0u64;
        for i in 0..(HIGH / 4096 + 60) {
            let path = format!("/tenants/hog/values/k{i}");
            let (status, body) = c.put(&path, value("hog", &path, 4096)).await.unwrap();
            writes.push((stored, status.as_u16(), body));
            if status == 204 {
                stored += 4096;
            }
        }
        writes
    });
    let others: Vec<_> = ["calm", "quiet"]
        .into_iter()
        .map(|tenant| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await.unwrap();
                for i in 0..300 {
                    let path = format!("/tenants/{tenant}/values/k{}", i % 100);
                    let v = value(tenant, &path, 2048);
                    assert_eq!(c.put(&path, v.clone()).await.unwrap().0, 204, "{path}");
                    assert_eq!(c.get(&path).await.unwrap(), (200.try_into().unwrap(), v));
                }
            })
        })
        .collect();
    let writes = hog.await.unwrap();
    for other in others {
        other.await.unwrap();
    }

    let refused = writes.iter().filter(|w| w.1 == 503).count();
    assert!(refused >= 40, "the hog got {refused} 503s");
    for (stored, status, body) in &writes {
        assert!(*status == 204 || *status == 503, "status {status}");
        // Once its values alone are over memory.high, every write is refused.
        if *stored > HIGH {
            assert_eq!(*status, 503, "a write with {stored} bytes stored: {body:?}");
        }
    }
    let hog_group = h().get("/high/hog").unwrap();
    let events = hog_group.events();
    assert!(events.high > 0);
    assert_eq!((events.max, events.oom), (0, 0), "no allocation failed");
    for other in ["/high/calm", "/high/quiet"] {
        assert_eq!(h().get(other).unwrap().events().high, 0, "{other}");
    }

    // Under memory.high again, the hog is served.
    assert_eq!(c.delete("/tenants/hog/values").await.unwrap().0, 204);
    let (status, _) = c
        .put("/tenants/hog/values/again", value("hog", "again", 4096))
        .await
        .unwrap();
    assert_eq!(status, 204);
}

/// What a strict OpenMetrics text parser accepts: families (`# TYPE`, with
/// optional `# HELP` and `# UNIT` before their samples), samples named
/// after their family, labels quoted and escaped, values that parse, and
/// `# EOF` as the last line. Returns `name{labels}` → value.
fn parse_openmetrics(text: &str) -> Result<HashMap<String, f64>, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("no `# EOF` at the end")?;
    let mut families: HashSet<String> = HashSet::new();
    let mut family: Option<(String, String)> = None; // (name, type)
    let mut samples = HashMap::new();
    for (n, line) in body.lines().enumerate() {
        let err = |why: &str| format!("line {}: {why}: {line}", n + 1);
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.ok_or_else(|| err("metadata without a name"))?;
            if !valid_name(name) {
                return Err(err("bad metric name"));
            }
            match (kind, rest) {
                (Some("TYPE"), Some(t)) => {
                    let types = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "stateset",
                        "info",
                        "summary",
                        "unknown",
                    ];
                    if !types.contains(&t) {
                        return Err(err("unknown type"));
                    }
                    if !families.insert(name.to_string()) {
                        return Err(err("family repeated"));
                    }
                    family = Some((name.to_string(), t.to_string()));
                }
                (Some("HELP"), Some(_)) => {}
                (Some("UNIT"), Some(unit)) => {
                    if !name.ends_with(&format!("_{unit}")) {
                        return Err(err("the family name does not end with its unit"));
                    }
                }
                _ => return Err(err("unknown metadata")),
            }
            continue;
        }
        let (fname, ftype) = family
            .as_ref()
            .ok_or_else(|| err("sample before any TYPE"))?;
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(err("sample without a value")),
        };
        let suffix = name
            .strip_prefix(fname.as_str())
            .ok_or_else(|| err("sample outside its family"))?;
        let allowed: &[&str] = match ftype.as_str() {
            "counter" => &["_total", "_created"],
            _ => &[""],
        };
        if !allowed.contains(&suffix) {
            return Err(err("sample name does not fit its family's type"));
        }
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (labels, value) = parse_labels(r).map_err(|e| err(&e))?;
                (labels, value)
            }
            None => (String::new(), rest),
        };
        let mut fields = value
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before the value"))?
            .split(' ');
        let v = fields.next().unwrap_or_default();
        let v: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => v.parse().map_err(|_| err("bad value"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<f64>().map_err(|_| err("bad timestamp"))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields"));
        }
        if samples.insert(format!("{name}{{{labels}}}"), v).is_some() {
            return Err(err("sample repeated"));
        }
    }
    Ok(samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parse `k="v",k2="v2"}` up to the closing brace; the labels as written,
/// and what follows the brace.
fn parse_labels(mut s: &str) -> Result<(String, &str), String> {
    let mut labels = Vec::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels.join(","), rest));
        }
        let eq = s.find("=\"").ok_or("label without =\"")?;
        let key = &s[..eq];
        if !valid_name(key) || key.contains(':') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = s[eq + 2..].char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break eq + 2 + i + 1,
                (_, '\\') => match chars.next().ok_or("unterminated escape")?.1 {
                    c @ ('\\' | '"') => value.push(c),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push(format!("{key}={value:?}"));
        s = &s[end..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// `/metrics` parses as OpenMetrics, with each group's memory files.
#[test]
fn metrics_parse_as_openmetrics() {
    run(metrics_parse_as_openmetrics_async());
}

async fn metrics_parse_as_openmetrics_async() {
    let addr = start("/scraped").await;
    let mut c = Client::connect(addr).await.unwrap();
    create(&mut c, "acme", "?max=64M&high=48M").await;
    let path = "/tenants/acme/values/k";
    assert_eq!(c.put(path, value("acme", "k", 8192)).await.unwrap().0, 204);

    let (status, text) = c.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    let text = std::str::from_utf8(&text).unwrap();
    let samples = parse_openmetrics(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let sample = |s: &str| {
        *samples
            .get(s)
            .unwrap_or_else(|| panic!("no {s} in\n{text}"))
    };
    let acme = r#"group="/scraped/acme""#;
    assert!(sample(&format!("memcg_memory_current_bytes{{{acme}}}")) >= 8192.0);
    assert_eq!(
        sample(&format!("memcg_memory_max_bytes{{{acme}}}")),
        (64 << 20) as f64
    );
    assert_eq!(
        sample(&format!("memcg_memory_high_bytes{{{acme}}}")),
        (48 << 20) as f64
    );
    assert!(sample(&format!("memcg_memory_peak_bytes{{{acme}}}")) >= 8192.0);
    for event in ["low", "high", "max", "oom"] {
        let s = format!("memcg_memory_events_total{{{acme},event=\"{event}\"}}");
        assert_eq!(sample(&s), 0.0, "{s}");
    }
    assert!(samples.contains_key(r#"memcg_memory_current_bytes{group="/"}"#));

    // The parser is strict: it refuses what OpenMetrics does.
    assert!(parse_openmetrics(text.strip_suffix("# EOF\n").unwrap()).is_err());
    assert!(parse_openmetrics("a_total 1\n# EOF\n").is_err());
    assert!(parse_openmetrics("# TYPE a counter\na 1\n# EOF\n").is_err());
    assert!(parse_openmetrics("# TYPE a gauge\na{b=\"c} 1\n# EOF\n").is_err());
    assert!(parse_openmetrics("# TYPE a_bytes gauge\n# UNIT a_bytes seconds\n# EOF\n").is_err());
}
