//! DESIGN.md §6: each module of `crates/memcg/src` imports only from its own
//! layer or below. A lower layer that needs to reach up (reclaim from a
//! failing charge, destruction of dead slab caches) gets a hook registered by
//! the layer above, never an import.
//!
//! Layers as built: the crate root's leaf modules, then one folder per
//! concept (DESIGN.md §6; each folder's `mod.rs` says what it owns):
//!
//! | layer | folders and modules |
//! |---|---|
//! | 0 leaves | `sync`, `error`, `reentrancy` (the re-entrancy flag), `fork` (the fork gate), `lifecycle` (the stated order of thread exit and of a fork's child), the crate root's constants |
//! | 1 groups | `group/`: page counter, stats, groups, kmem contexts, deferred work, events, pressure, LRU lists, the shrinker trait |
//! | 2 accounting | `accounting/`: charge, charge stocks, object stocks, the thread's current group |
//! | 3 allocator | `alloc/`: the global allocator, kmem pages, `slab/`, `large/` |
//! | 4 reclaim | `reclaim/`: reclaim and protection, user pages |
//! | 5 front ends | `thread/` (tasks, spawn, futures) and `interface/` (the hierarchy's handles, interface files, metrics), which use each other |
//!
//! kmem contexts sit with groups: a group owns its context and removal
//! switches it (the kernel keeps `mem_cgroup` and `obj_cgroup` together in
//! memcontrol.c for the same reason); charging through contexts, the stocks
//! and the thread's current group are accounting. A module is held to its
//! folder's layer: inside a folder, modules use each other freely.
//!
//! What counts as an import, read with `syn` from every file the crate
//! compiles (found by following its `mod` declarations from `lib.rs`):
//! every `use` tree that reaches the crate (nested groups, renames, globs,
//! `self::` and `super::` resolved from the module they are written in), and
//! every path in code, types and macro bodies that does (`crate::slab::heap::
//! free(p)`, `super::super::global::X`, `$crate::x`), in every item: functions,
//! impls, inline modules, items under a cfg other than `test`. Only items
//! under `#[cfg(test)]` or `#[cfg(all(test, ...))]` (unit tests, loom models)
//! are skipped; `pub(in path)` is a visibility, not an import. A name of the
//! crate root counts as the module it is re-exported from, and a function or
//! constant defined in the root as the highest layer its body reaches
//! (`crate::PAGE_SIZE` is a leaf, `crate::drain_stocks` reaches `slab`).

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Attribute, Item, Meta, Token, UseTree};

const LAYERS: &[(&str, u8)] = &[
    ("sync", 0),
    ("error", 0),
    ("reentrancy", 0),
    ("fork", 0),
    ("lifecycle", 0),
    ("group", 1),
    ("accounting", 2),
    ("alloc", 3),
    ("reclaim", 4),
    ("thread", 5),
    ("interface", 5),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// Under a `#[cfg]` that holds only when testing: `test`, `all(.., test, ..)`.
fn test_only(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.parse_args::<Meta>().is_ok_and(|m| implies_test(&m)))
}

fn implies_test(m: &Meta) -> bool {
    let args = |l: &syn::MetaList| {
        l.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .map(|p| p.into_iter().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    match m {
        Meta::Path(p) => p.is_ident("test"),
        Meta::List(l) if l.path.is_ident("all") => args(l).iter().any(implies_test),
        Meta::List(l) if l.path.is_ident("any") => {
            let a = args(l);
            !a.is_empty() && a.iter().all(implies_test)
        }
        _ => false,
    }
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn line(span: Span) -> usize {
    span.start().line
}

/// A path that names something of the crate.
#[derive(Debug)]
struct Found {
    line: usize,
    /// The segments after `crate`; empty for the root itself (`crate::*`).
    path: Vec<String>,
    glob: bool,
}

impl Found {
    fn shown(&self) -> String {
        let mut s = vec!["crate"];
        s.extend(self.path.iter().map(String::as_str));
        if self.glob {
            s.push("*");
        }
        s.join("::")
    }
}

/// Reads one module (a file, with its inline modules).
struct Collector<'a> {
    /// The module being read: its path after `crate`.
    module: Vec<String>,
    /// The crate root's modules, which `lib.rs` names without `crate::`.
    top: &'a BTreeSet<String>,
    /// Where the files of the current module's `mod x;` children are.
    dir: PathBuf,
    found: Vec<Found>,
    /// `mod x;` declarations: the child module and its file.
    children: Vec<(Vec<String>, PathBuf)>,
    /// Files of `mod x;` declarations under a test-only cfg.
    test_files: Vec<PathBuf>,
}

impl<'a> Collector<'a> {
    fn new(module: Vec<String>, dir: PathBuf, top: &'a BTreeSet<String>) -> Self {
        Collector {
            module,
            top,
            dir,
            found: Vec::new(),
            children: Vec::new(),
            test_files: Vec::new(),
        }
    }

    /// `segs` as a path after `crate`, or `None` when it names no module of
    /// the crate other than the current one's children (`std::..`, a local).
    fn resolve(&self, segs: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?.as_str();
        match first {
            "crate" => Some(segs[1..].to_vec()),
            "self" | "super" => {
                let mut at = self.module.clone();
                let mut rest = segs;
                if first == "self" {
                    rest = &rest[1..];
                }
                while rest.first().is_some_and(|s| s == "super") {
                    at.pop().expect("`super` above the crate root");
                    rest = &rest[1..];
                }
                at.extend(rest.iter().cloned());
                Some(at)
            }
            name if self.module.is_empty() && self.top.contains(name) => Some(segs.to_vec()),
            _ => None,
        }
    }

    fn note(&mut self, line: usize, segs: &[String], glob: bool) {
        if let Some(path) = self.resolve(segs) {
            if !path.is_empty() || glob {
                self.found.push(Found { line, path, glob });
            }
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &UseTree) {
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            UseTree::Name(n) => self.use_name(prefix, &n.ident),
            UseTree::Rename(r) => self.use_name(prefix, &r.ident),
            UseTree::Glob(g) => self.note(line(g.star_token.span), &prefix.clone(), true),
            UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn use_name(&mut self, prefix: &[String], ident: &syn::Ident) {
        let mut path = prefix.to_vec();
        // `use a::{self, b}` imports `a`.
        if ident != "self" {
            path.push(ident.to_string());
        }
        self.note(line(ident.span()), &path, false);
    }

    /// Paths in tokens syn leaves unparsed (macro invocations and
    /// `macro_rules!` bodies): `crate::a::b`, `$crate::a`, `super::a`,
    /// `self::a`, and `crate::{a, b::c}` groups.
    fn tokens(&mut self, tokens: TokenStream) {
        let tts: Vec<TokenTree> = tokens.into_iter().collect();
        let colons = |j: usize| {
            matches!((tts.get(j), tts.get(j + 1)), (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                if a.as_char() == ':' && b.as_char() == ':')
        };
        let mut i = 0;
        while i < tts.len() {
            match &tts[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if ["crate", "self", "super"].contains(&&*id.to_string()) => {
                    let mut segs = vec![id.to_string()];
                    let mut j = i + 1;
                    while colons(j) {
                        match tts.get(j + 2) {
                            Some(TokenTree::Ident(n)) => {
                                segs.push(n.to_string());
                                j += 3;
                            }
                            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                                let group: TokenStream = tts[i..j + 3].iter().cloned().collect();
                                let tree: UseTree = syn::parse2(group).expect("a use group");
                                self.use_tree(&mut Vec::new(), &tree);
                                segs.clear();
                                j += 3;
                                break;
                            }
                            _ => break,
                        }
                    }
                    if segs.len() > 1 {
                        self.note(line(id.span()), &segs, false);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// The file of `mod name;` declared in the current module.
    fn child_file(&self, m: &syn::ItemMod) -> PathBuf {
        assert!(
            !m.attrs.iter().any(|a| a.path().is_ident("path")),
            "layers.rs does not follow #[path] (mod {})",
            m.ident
        );
        let name = m.ident.to_string();
        let candidates = [
            self.dir.join(format!("{name}.rs")),
            self.dir.join(&name).join("mod.rs"),
        ];
        candidates
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no file for mod {name} in {}", self.dir.display()))
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, i: &'ast Item) {
        if !test_only(item_attrs(i)) {
            visit::visit_item(self, i);
        } else if let Item::Mod(m) = i {
            if m.content.is_none() {
                let file = self.child_file(m);
                self.test_files.push(file);
            }
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let name = m.ident.to_string();
        match &m.content {
            None => {
                let mut module = self.module.clone();
                module.push(name);
                let file = self.child_file(m);
                self.children.push((module, file));
            }
            Some((_, items)) => {
                self.module.push(name.clone());
                let inner = self.dir.join(&name);
                let dir = std::mem::replace(&mut self.dir, inner);
                for i in items {
                    self.visit_item(i);
                }
                self.dir = dir;
                self.module.pop();
            }
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if u.leading_colon.is_none() {
            self.use_tree(&mut Vec::new(), &u.tree);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        // A lone `self` is a method's receiver, not a module.
        if p.leading_colon.is_none() && !p.is_ident("self") {
            let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.note(line(p.span()), &segs, false);
        }
        visit::visit_path(self, p);
    }

    fn visit_vis_restricted(&mut self, _: &'ast syn::VisRestricted) {}

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        visit::visit_macro(self, m);
        self.tokens(m.tokens.clone());
    }

    fn visit_impl_item(&mut self, i: &'ast syn::ImplItem) {
        let attrs: &[Attribute] = match i {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !test_only(attrs) {
            visit::visit_impl_item(self, i);
        }
    }

    fn visit_trait_item(&mut self, i: &'ast syn::TraitItem) {
        let attrs: &[Attribute] = match i {
            syn::TraitItem::Const(i) => &i.attrs,
            syn::TraitItem::Fn(i) => &i.attrs,
            syn::TraitItem::Type(i) => &i.attrs,
            syn::TraitItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !test_only(attrs) {
            visit::visit_trait_item(self, i);
        }
    }

    fn visit_local(&mut self, l: &'ast syn::Local) {
        if !test_only(&l.attrs) {
            visit::visit_local(self, l);
        }
    }

    fn visit_stmt_macro(&mut self, m: &'ast syn::StmtMacro) {
        if !test_only(&m.attrs) {
            visit::visit_stmt_macro(self, m);
        }
    }

    fn visit_field(&mut self, f: &'ast syn::Field) {
        if !test_only(&f.attrs) {
            visit::visit_field(self, f);
        }
    }

    fn visit_variant(&mut self, v: &'ast syn::Variant) {
        if !test_only(&v.attrs) {
            visit::visit_variant(self, v);
        }
    }

    fn visit_arm(&mut self, a: &'ast syn::Arm) {
        if !test_only(&a.attrs) {
            visit::visit_arm(self, a);
        }
    }

    fn visit_field_value(&mut self, f: &'ast syn::FieldValue) {
        if !test_only(&f.attrs) {
            visit::visit_field_value(self, f);
        }
    }
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).unwrap();
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A module file of the crate and the crate paths it names.
struct Module {
    path: Vec<String>,
    /// Relative to `src`.
    file: String,
    found: Vec<Found>,
}

struct Crate {
    top: BTreeSet<String>,
    /// Names of the crate root: the module each reaches, and its layer.
    root: BTreeMap<String, (String, u8)>,
    /// Every file the crate compiles outside tests, but `lib.rs`.
    modules: Vec<Module>,
    /// Files compiled only for tests, relative to `src`.
    test_files: Vec<String>,
}

fn relative(file: &Path) -> String {
    file.strip_prefix(src()).unwrap().display().to_string()
}

impl Crate {
    fn read() -> Crate {
        let lib = parse(&src().join("lib.rs"));
        let top: BTreeSet<String> = lib
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Mod(m) => Some(m.ident.to_string()),
                _ => None,
            })
            .collect();
        let mut krate = Crate {
            root: BTreeMap::new(),
            modules: Vec::new(),
            test_files: Vec::new(),
            top,
        };
        krate.read_root(&lib);

        let mut root = Collector::new(Vec::new(), src(), &krate.top);
        root.visit_file(&lib);
        let mut todo = root.children;
        let mut test_files = root.test_files;
        while let Some((path, file)) = todo.pop() {
            let dir = match file.file_name().unwrap().to_str().unwrap() {
                "mod.rs" => file.parent().unwrap().to_path_buf(),
                _ => file.with_extension(""),
            };
            let mut c = Collector::new(path.clone(), dir, &krate.top);
            c.visit_file(&parse(&file));
            todo.extend(c.children);
            test_files.extend(c.test_files);
            krate.modules.push(Module {
                path,
                file: relative(&file),
                found: c.found,
            });
        }
        krate.modules.sort_by(|a, b| a.file.cmp(&b.file));
        krate.test_files = test_files.iter().map(|f| relative(f)).collect();
        krate.test_files.sort();
        krate
    }

    /// The names of the crate root: re-exports count as the module they come
    /// from; a function or constant as the highest layer it reaches.
    fn read_root(&mut self, lib: &syn::File) {
        let mut defined = Vec::new();
        for item in lib.items.iter().filter(|i| !test_only(item_attrs(i))) {
            match item {
                Item::Mod(_) => {}
                Item::Use(u) => {
                    for (name, module) in root_uses(&u.tree, &mut Vec::new()) {
                        let layer = layer_of(&module)
                            .unwrap_or_else(|| panic!("{module} has no layer in LAYERS"));
                        self.root.insert(name, (module, layer));
                    }
                }
                _ => {
                    let ident = match item {
                        Item::Const(i) => Some(&i.ident),
                        Item::Fn(i) => Some(&i.sig.ident),
                        Item::Static(i) => Some(&i.ident),
                        Item::Struct(i) => Some(&i.ident),
                        Item::Enum(i) => Some(&i.ident),
                        Item::Type(i) => Some(&i.ident),
                        Item::Trait(i) => Some(&i.ident),
                        _ => None,
                    };
                    let mut c = Collector::new(Vec::new(), src(), &self.top);
                    c.visit_item(item);
                    if let Some(ident) = ident {
                        let name = ident.to_string();
                        self.root.insert(name.clone(), ("the crate root".into(), 0));
                        defined.push((name, c.found));
                    }
                }
            }
        }
        // A root function may call another: propagate to a fixpoint.
        loop {
            let mut changed = false;
            for (name, found) in &defined {
                for f in found {
                    let (module, layer) = self.target(&f.path);
                    if layer > self.root[name].1 {
                        self.root.insert(name.clone(), (module, layer));
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// What a path after `crate` reaches: a module, and its layer.
    fn target(&self, path: &[String]) -> (String, u8) {
        let Some(first) = path.first() else {
            let top = LAYERS.iter().map(|&(_, l)| l).max().unwrap();
            return ("everything in the crate root".into(), top);
        };
        if let Some(layer) = layer_of(first) {
            return (first.clone(), layer);
        }
        self.root.get(first).cloned().unwrap_or_else(|| {
            panic!("crate::{first} is no module in LAYERS and no name of the crate root")
        })
    }

    /// The paths of `found` (read in `module`, file `file`) that reach above
    /// the module's layer, one message each.
    fn violations(&self, module: &[String], file: &str, found: &[Found]) -> Vec<String> {
        let top = &module[0];
        let own = layer_of(top).unwrap_or_else(|| panic!("{top} has no layer in LAYERS"));
        found
            .iter()
            .filter_map(|f| {
                let (target, layer) = self.target(&f.path);
                (layer > own).then(|| {
                    format!(
                        "{file}:{} (layer {own}) uses {} ({target}, layer {layer})",
                        f.line,
                        f.shown()
                    )
                })
            })
            .collect()
    }

    /// Read `text` as the module `module` (no `mod x;` children).
    fn read_text(&self, module: &[&str], text: &str) -> Vec<Found> {
        let module = module.iter().map(|s| s.to_string()).collect();
        let mut c = Collector::new(module, src(), &self.top);
        c.visit_file(&syn::parse_file(text).unwrap());
        assert!(c.children.is_empty());
        c.found
    }
}

/// The leaves of a `use` tree in the crate root: (name, first segment).
fn root_uses(tree: &UseTree, prefix: &mut Vec<String>) -> Vec<(String, String)> {
    let module = |prefix: &[String], name: &str| {
        let first = prefix.first().map_or(name, String::as_str);
        let first = if first == "crate" { &prefix[1] } else { first };
        first.to_string()
    };
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            let out = root_uses(&p.tree, prefix);
            prefix.pop();
            out
        }
        UseTree::Name(n) => vec![(n.ident.to_string(), module(prefix, &n.ident.to_string()))],
        UseTree::Rename(r) => vec![(r.rename.to_string(), module(prefix, &r.ident.to_string()))],
        UseTree::Glob(_) => panic!("a glob in lib.rs: layers.rs cannot tell its names"),
        UseTree::Group(g) => g.items.iter().flat_map(|t| root_uses(t, prefix)).collect(),
    }
}

#[test]
fn each_module_imports_only_its_layer_or_below() {
    let krate = Crate::read();
    let mut violations = Vec::new();
    for m in &krate.modules {
        violations.extend(krate.violations(&m.path, &m.file, &m.found));
    }
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

/// Every `.rs` file under `src` is read, or compiled only for tests; nothing
/// escapes the check by being reached some way the walk does not follow.
#[test]
fn the_checker_reads_every_file_of_the_crate() {
    let krate = Crate::read();
    let mut all = Vec::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                all.push(relative(&path));
            }
        }
    }
    all.sort();
    let mut read: Vec<String> = krate.modules.iter().map(|m| m.file.clone()).collect();
    read.push("lib.rs".into());
    read.extend(krate.test_files.iter().cloned());
    read.sort();
    assert_eq!(read, all);
    assert_eq!(
        krate.test_files,
        ["alloc/slab/loom_model.rs", "loom_models.rs"]
    );
    // The whole of a file is read, not only its top: slab/mod.rs names
    // crate::group after its loom model's `mod` declaration.
    let slab = krate.modules.iter().find(|m| m.file == "alloc/slab/mod.rs");
    assert!(slab
        .unwrap()
        .found
        .iter()
        .any(|f| f.path.first().is_some_and(|p| p == "group")));
}

/// The checker on a module written to break the rule every way it knows.
#[test]
fn the_checker_sees_a_violation() {
    const PAGE_COUNTER: &str = r#"use crate::{
    error::Error,
    alloc::slab::{heap, slab::Slab as S},
};
use super::super::alloc::global::*;
use self::inner::Deep;
// crate::thread in a comment, and in a doc link: [`x`](crate::thread::task)
pub(in crate::group::page_counter) fn f() -> crate::alloc::large::Run {
    crate::alloc::kmem::alloc(4096);
    let _ = crate::PAGE_SIZE + crate::CHARGE_BATCH;
    crate::drain_stocks();
    format!("{}", crate::interface::hierarchy::X);
}
mod inner {
    pub struct Deep(super::super::super::reclaim::user::UserPage);
}
#[cfg(not(test))]
impl Counter { fn g() { use crate::{sync::Arc, reclaim as r}; } }
macro_rules! m { () => { $crate::interface::files::f(); crate::{group::stats, thread::spawn} } }
#[cfg(test)]
mod tests { use crate::alloc::global::MemcgAlloc; }
#[cfg(all(test, loom))]
fn model() { crate::thread::task::detach(); }
"#;
    let krate = Crate::read();
    assert_eq!(krate.root["MemcgAlloc"], ("alloc".to_string(), 3));
    assert_eq!(krate.root["PAGE_SIZE"].1, 0);
    assert_eq!(krate.root["drain_stocks"], ("alloc".to_string(), 3));
    let module = ["group", "page_counter"];
    let found = krate.read_text(&module, PAGE_COUNTER);
    let f = "group/page_counter.rs";
    assert_eq!(
        krate.violations(&module.map(String::from), f, &found),
        [
            format!("{f}:3 (layer 1) uses crate::alloc::slab::heap (alloc, layer 3)"),
            format!("{f}:3 (layer 1) uses crate::alloc::slab::slab::Slab (alloc, layer 3)"),
            format!("{f}:5 (layer 1) uses crate::alloc::global::* (alloc, layer 3)"),
            format!("{f}:8 (layer 1) uses crate::alloc::large::Run (alloc, layer 3)"),
            format!("{f}:9 (layer 1) uses crate::alloc::kmem::alloc (alloc, layer 3)"),
            format!("{f}:10 (layer 1) uses crate::CHARGE_BATCH (accounting, layer 2)"),
            format!("{f}:11 (layer 1) uses crate::drain_stocks (alloc, layer 3)"),
            format!("{f}:12 (layer 1) uses crate::interface::hierarchy::X (interface, layer 5)"),
            format!("{f}:15 (layer 1) uses crate::reclaim::user::UserPage (reclaim, layer 4)"),
            format!("{f}:18 (layer 1) uses crate::reclaim (reclaim, layer 4)"),
            format!("{f}:19 (layer 1) uses crate::interface::files::f (interface, layer 5)"),
            format!("{f}:19 (layer 1) uses crate::thread::spawn (thread, layer 5)"),
        ]
    );
    // Below: the same paths are fine in a front end, and `self`, `super`
    // resolve from the module they are written in.
    let module = ["interface", "hierarchy"];
    let found = krate.read_text(&module, PAGE_COUNTER);
    assert_eq!(
        krate.violations(&module.map(String::from), "interface/hierarchy.rs", &found),
        Vec::<String>::new()
    );
    let shown: Vec<String> = found.iter().map(Found::shown).collect();
    assert!(shown.contains(&"crate::interface::hierarchy::inner::Deep".to_string()));
    assert!(shown.contains(&"crate::alloc::global::*".to_string()));
}
