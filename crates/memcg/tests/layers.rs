//! DESIGN.md §6: each module of `crates/memcg/src` imports only from its own
//! layer or below. A lower layer that needs to reach up (reclaim from a
//! failing charge, destruction of dead slab caches) gets a hook registered by
//! the layer above, never an import.
//!
//! Layers as built (DESIGN.md §6 with one change, said in the table):
//!
//! | layer | modules |
//! |---|---|
//! | 0 leaves | `sync`, `error`, `internal` (the re-entrancy flag), the crate root's constants |
//! | 1 page counter | `page_counter` |
//! | 2 groups | `group`, `context`, `deferred`, `stats`, `lru`, `shrinker` |
//! | 3 charging | `charge`, `stock`, `objstock`, `current` |
//! | 4 allocator | `slab::*`, `kmem`, `large::*` |
//! | 5 reclaim | `user`, `reclaim`, `files` |
//! | 6 front ends | `global`, `task`, `hierarchy` |
//!
//! kmem contexts sit with groups in layer 2: a group owns its context and
//! removal switches it (the kernel keeps `mem_cgroup` and `obj_cgroup`
//! together in memcontrol.c for the same reason); charging through contexts,
//! the stocks and the thread's current context are layer 3.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    ("sync", 0),
    ("error", 0),
    ("internal", 0),
    ("page_counter", 1),
    ("group", 2),
    ("context", 2),
    ("deferred", 2),
    ("fork", 0),
    ("watch", 2),
    ("psi", 2),
    ("stats", 2),
    ("lru", 2),
    ("shrinker", 2),
    ("charge", 3),
    ("stock", 3),
    ("objstock", 3),
    ("current", 3),
    ("slab", 4),
    ("kmem", 4),
    ("large", 4),
    ("user", 5),
    ("reclaim", 5),
    ("files", 5),
    ("global", 6),
    ("task", 6),
    ("thread", 6),
    ("future", 6),
    ("metrics", 6),
    ("hierarchy", 6),
];

/// Test-only modules, checked by nothing here.
const SKIP: &[&str] = &["loom_models", "slab/loom_model"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// The crate root's re-exports (`pub use module::{A, b};`): item -> module.
fn root_items() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut items = BTreeMap::new();
    let mut text = String::new();
    for line in lib.lines().map(str::trim) {
        if line.starts_with("pub use ") || !text.is_empty() {
            text.push_str(line);
            if line.ends_with(';') {
                let body = text.trim_start_matches("pub use ").trim_end_matches(';');
                let (module, names) = body.split_once("::").unwrap();
                for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
                    let name = name.trim().rsplit("::").next().unwrap().to_string();
                    if !name.is_empty() {
                        items.insert(name, module.to_string());
                    }
                }
                text.clear();
            }
        }
    }
    items
}

/// Every `crate::NAME` in code (comments stripped), with its line.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if rest.starts_with('{') {
                let group = &rest[1..rest.find('}').unwrap()];
                found.extend(group.split(',').map(|s| (n + 1, s.trim().to_string())));
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push((n + 1, name));
            }
        }
    }
    found
}

fn modules() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for sub in std::fs::read_dir(&path).unwrap() {
                let sub = sub.unwrap().path();
                let name = format!(
                    "{}/{}",
                    path.file_name().unwrap().to_str().unwrap(),
                    sub.file_stem().unwrap().to_str().unwrap()
                );
                out.push((name, sub));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((
                path.file_stem().unwrap().to_str().unwrap().to_string(),
                path,
            ));
        }
    }
    out
}

#[test]
fn each_module_imports_only_its_layer_or_below() {
    let items = root_items();
    let mut violations = Vec::new();
    for (module, path) in modules() {
        if module == "lib" || SKIP.contains(&module.as_str()) {
            continue;
        }
        let top = module.split('/').next().unwrap();
        let own = layer_of(top).unwrap_or_else(|| panic!("{module} has no layer in LAYERS"));
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests at the end of a file may use anything.
        let text = text.split("#[cfg(all(test").next().unwrap();
        for (line, name) in crate_paths(text) {
            let target = match layer_of(&name) {
                Some(_) => name.clone(),
                None => match items.get(&name) {
                    Some(m) => m.clone(),
                    // A constant or function of the crate root: a leaf.
                    None => continue,
                },
            };
            let layer = layer_of(&target).unwrap();
            if layer > own {
                violations.push(format!(
                    "{module}.rs:{line} (layer {own}) uses crate::{name} ({target}, layer {layer})"
                ));
            }
        }
    }
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_a_violation() {
    let paths =
        crate_paths("use crate::slab::heap;\n// crate::task in a comment\nlet x = crate::{a, b};");
    assert_eq!(
        paths,
        vec![
            (1, "slab".to_string()),
            (3, "a".to_string()),
            (3, "b".to_string())
        ]
    );
    assert!(root_items()
        .get("MemcgAlloc")
        .is_some_and(|m| m == "global"));
}
