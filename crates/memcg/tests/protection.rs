//! S13 and `memory.high`: ports of the kernel's selftests
//! `test_memcg_min`, `test_memcg_low` and `test_memcg_high`
//! (tools/testing/selftests/cgroup/test_memcontrol.c), with their sizes and
//! their tolerances (`values_close`, integer arithmetic as there). Page
//! cache is file pages; a process that allocates anon memory and exits is a
//! thread that charges anon pages and frees them.

use memcg::{ErrorKind, Group, Hierarchy, PageKind, UserPage};

const MB: u64 = 1 << 20;
const PAGE: u64 = 4096;

fn current(g: &Group) -> u64 {
    g.hierarchy().quiesce();
    g.read("memory.current").unwrap().trim().parse().unwrap()
}

fn event(g: &Group, key: &str) -> u64 {
    g.read("memory.events")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap()
}

/// The selftests' `values_close`: |a - b| <= (a + b) / 100 * err.
fn values_close(a: u64, b: u64, err: u64) -> bool {
    a.abs_diff(b) <= (a + b) / 100 * err
}

/// Charge `bytes` of `kind` pages in `g`, page by page, as a process
/// touching them would; stops at the first failure (the OOM kill).
fn charge(g: &Group, kind: PageKind, bytes: u64) -> (Vec<UserPage>, Result<(), memcg::Error>) {
    let _in_g = g.enter().unwrap();
    let mut pages = Vec::with_capacity((bytes / PAGE) as usize);
    for _ in 0..bytes / PAGE {
        match UserPage::charge(kind) {
            Ok(p) => pages.push(p),
            Err(e) => return (pages, Err(e)),
        }
    }
    (pages, Ok(()))
}

/// `reclaim_until` of the selftests: write memory.reclaim until usage
/// reaches `goal` (within 3%); false if memory.reclaim misbehaves.
fn reclaim_until(g: &Group, goal: u64) -> bool {
    let mut reclaimed = false;
    for _ in 0..5 {
        let cur = current(g);
        if cur < goal || values_close(cur, goal, 3) {
            break;
        } else if reclaimed {
            return false;
        }
        match g.write("memory.reclaim", &(cur - goal).to_string()) {
            Ok(()) => reclaimed = true,
            Err(e) if e.kind() == ErrorKind::Again => {}
            Err(_) => return false,
        }
    }
    reclaimed
}

/// A(max 200M) / B(50M) / C(75M) D(25M) E(0) F(500M) of protection; C, D, E
/// hold 50M of page cache each; A/G then allocates 148M of anon (and exits),
/// then 170M.
fn protection(min: bool) {
    let attribute = if min { "memory.min" } else { "memory.low" };
    let h = Hierarchy::new();
    let a = h.create("/A").unwrap();
    a.write("memory.max", "200M").unwrap();
    let b = h.create("/A/B").unwrap();
    let g = h.create("/A/G").unwrap();
    let children: Vec<Group> = ["C", "D", "E", "F"]
        .iter()
        .map(|n| h.create(&format!("/A/B/{n}")).unwrap())
        .collect();
    b.write(attribute, "50M").unwrap();
    for (child, setting) in children.iter().zip(["75M", "25M", "0", "500M"]) {
        child.write(attribute, setting).unwrap();
        assert_eq!(
            child.read(attribute).unwrap(),
            format!("{}\n", memcg::parse_size(setting).unwrap())
        );
    }
    let cache: Vec<Vec<UserPage>> = children[..3]
        .iter()
        .map(|c| {
            let (pages, r) = charge(c, PageKind::File, 50 * MB);
            r.unwrap();
            pages
        })
        .collect();
    assert!(values_close(current(&b), 150 * MB, 3), "{}", current(&b));

    let (anon, r) = charge(&g, PageKind::Anon, 148 * MB);
    r.expect("148M of anon fits once unprotected page cache is reclaimed");
    drop(anon);

    let c: Vec<u64> = children.iter().map(current).collect();
    let got_b = current(&b);
    eprintln!(
        "{attribute}: A/B {} M, children {:?} M",
        got_b / MB,
        c.iter().map(|x| x / MB).collect::<Vec<_>>()
    );
    assert!(values_close(got_b, 50 * MB, 3), "A/B {got_b}");
    assert!(values_close(c[0], 29 * MB, 15), "A/B/C {}", c[0]);
    assert!(values_close(c[1], 21 * MB, 20), "A/B/D {}", c[1]);
    assert_eq!(c[3], 0, "A/B/F");

    let (anon, r) = charge(&g, PageKind::Anon, 170 * MB);
    if min {
        assert_eq!(
            r.expect_err("memory.min protects the page cache even against an OOM")
                .kind(),
            ErrorKind::Limit
        );
    } else {
        r.expect("memory.low does not prevent allocating anon memory");
    }
    drop(anon);
    let want = if min { 50 * MB } else { 30 * MB };
    assert!(values_close(current(&b), want, 3), "A/B {}", current(&b));

    // memory.reclaim ignores the target's own protection, and the emin
    // computed before (~29M) does not hold it back.
    assert!(
        reclaim_until(&children[0], 10 * MB),
        "A/B/C {}",
        current(&children[0])
    );

    if !min {
        for (i, child) in children.iter().enumerate() {
            assert_eq!(event(child, "oom"), 0, "{}", child.path());
            let low = event(child, "low");
            if i <= 1 {
                assert!(low > 0, "{} low {low}", child.path());
            } else {
                assert_eq!(low, 0, "{}", child.path());
            }
        }
    }
    drop(cache);
    h.quiesce();
    assert_eq!(current(&a), 0);
}

#[test]
fn test_memcg_min() {
    protection(true);
}

#[test]
fn test_memcg_low() {
    protection(false);
}

/// `memory.high` limits both anon and page cache: 31M of anon passes a
/// 30M high (reclaim cannot take anon); 50M of page cache ends near 30M
/// (within 5%), so a check for 50M fails; high events are counted.
#[test]
fn test_memcg_high() {
    let h = Hierarchy::new();
    let g = h.create("/memcg_test").unwrap();
    assert_eq!(g.read("memory.high").unwrap(), "max\n");
    g.write("memory.high", "30M").unwrap();
    let (anon, r) = charge(&g, PageKind::Anon, 31 * MB);
    r.unwrap();
    drop(anon);
    let (cache, r) = charge(&g, PageKind::File, 50 * MB);
    r.unwrap();
    // alloc_pagecache_50M_check fails: usage is not 50M.
    assert!(!values_close(current(&g), 50 * MB, 3), "{}", current(&g));
    drop(cache);
    // alloc_pagecache_max_30M: 50M of page cache, usage near 30M.
    let (cache, r) = charge(&g, PageKind::File, 50 * MB);
    r.unwrap();
    assert!(values_close(current(&g), 30 * MB, 5), "{}", current(&g));
    assert!(event(&g, "high") > 0);
    drop(cache);
}
