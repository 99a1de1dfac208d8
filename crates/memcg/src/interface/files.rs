//! The cgroup v2 interface files of DESIGN.md §4: formats, parsing, and the
//! reclaim that limit writes trigger.

use crate::accounting::charge::{bytes, MAX_RECLAIM_RETRIES};
use crate::error::{Error, Result};
use crate::group::page_counter::PAGE_COUNTER_MAX;
use crate::group::stats::{Event, Stat, EVENT_NAMES};
use crate::group::GroupInner;
use crate::reclaim::reclaim;
use crate::sync::Arc;
use crate::PAGE_SIZE;
use std::fmt::Write;

/// Files every group has.
const COMMON_FILES: [&str; 5] = [
    "memory.current",
    "memory.stat",
    "memory.pressure",
    "cgroup.stat",
    "cgroup.procs",
];
/// Files only non-root groups have.
const CHILD_FILES: [&str; 12] = [
    "memory.oom.group",
    "cgroup.kill",
    "cgroup.freeze",
    "cgroup.events",
    "memory.min",
    "memory.low",
    "memory.max",
    "memory.high",
    "memory.peak",
    "memory.reclaim",
    "memory.events",
    "memory.events.local",
];

/// Parse a size: an integer with an optional `K`, `M` or `G` suffix (powers of
/// 1024, either case). `None` for anything else, including overflow.
///
/// ```
/// assert_eq!(memcg::parse_size("4K"), Some(4096));
/// assert_eq!(memcg::parse_size("30M"), Some(30 << 20));
/// assert_eq!(memcg::parse_size("max"), None);
/// ```
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A limit value in pages: `max` or a size rounded down to whole pages.
fn parse_limit(file: &str, value: &str) -> Result<usize> {
    let value = value.trim();
    if value == "max" {
        return Ok(PAGE_COUNTER_MAX);
    }
    let bytes = parse_size(value).ok_or_else(|| {
        Error::Invalid(format!(
            "{file}: {value:?} is not a size; write bytes with an optional K/M/G suffix, or max"
        ))
    })?;
    Ok(usize::try_from(bytes / PAGE_SIZE as u64)
        .unwrap_or(PAGE_COUNTER_MAX)
        .min(PAGE_COUNTER_MAX))
}

fn fmt_limit(pages: usize) -> String {
    if pages >= PAGE_COUNTER_MAX {
        "max\n".into()
    } else {
        format!("{}\n", bytes(pages))
    }
}

fn check_file(g: &GroupInner, file: &str) -> Result<()> {
    if COMMON_FILES.contains(&file) {
        return Ok(());
    }
    if CHILD_FILES.contains(&file) {
        if g.is_root() {
            return Err(Error::Invalid(format!(
                "the root group has no {file}: limits and events apply to non-root groups"
            )));
        }
        return Ok(());
    }
    let dir = if g.is_root() { "" } else { g.path.as_str() };
    Err(Error::NotFound(format!("interface file {dir}/{file}")))
}

pub(crate) fn read(g: &GroupInner, file: &str) -> Result<String> {
    check_file(g, file)?;
    let c = &g.counter;
    Ok(match file {
        "memory.current" => format!("{}\n", bytes(c.usage())),
        "memory.min" => fmt_limit(g.min.load(crate::sync::Ordering::Relaxed)),
        "memory.low" => fmt_limit(g.low.load(crate::sync::Ordering::Relaxed)),
        "memory.max" => fmt_limit(c.max()),
        "memory.high" => fmt_limit(c.high()),
        "memory.peak" => format!("{}\n", bytes(c.peak())),
        "memory.events" => events(|e| g.events.hier(e)),
        "memory.events.local" => events(|e| g.events.local(e)),
        "memory.stat" => stat(g),
        "memory.oom.group" => format!(
            "{}\n",
            g.oom_group.load(crate::sync::Ordering::Relaxed) as u8
        ),
        "cgroup.freeze" => format!("{}\n", g.freeze.load(crate::sync::Ordering::Relaxed) as u8),
        "cgroup.events" => {
            let populated = g.tasks_hier.load(crate::sync::Ordering::Relaxed) > 0
                || g.bound_hier.load(crate::sync::Ordering::Relaxed) > 0;
            let frozen = crate::group::kill::is_frozen(g);
            format!("populated {}\nfrozen {}\n", populated as u8, frozen as u8)
        }
        "cgroup.kill" => {
            return Err(Error::Invalid(
                "cgroup.kill is write-only: write 1 to kill the subtree's killable units".into(),
            ))
        }
        "memory.pressure" => g.psi.render(),
        "cgroup.stat" => {
            let live = if g.is_dying() {
                0
            } else {
                g.common.tree.lock().descendants(&g.path).count()
            };
            let dying = g.nr_dying_descendants.load(crate::sync::Ordering::Relaxed);
            format!("nr_descendants {live}\nnr_dying_descendants {dying}\n")
        }
        "cgroup.procs" => g
            .tasks
            .lock()
            .iter()
            .map(|t| format!("{}\n", t.name))
            .collect(),
        "memory.reclaim" => {
            return Err(Error::Invalid(
                "memory.reclaim is write-only: write a size to reclaim".into(),
            ))
        }
        _ => unreachable!("checked above"),
    })
}

fn events(count: impl Fn(Event) -> usize) -> String {
    EVENT_NAMES
        .iter()
        .map(|&(e, name)| format!("{name} {}\n", count(e)))
        .collect()
}

fn stat(g: &GroupInner) -> String {
    let s = &g.stats;
    let mut out = String::new();
    for (key, bytes) in [
        ("anon", s.get(Stat::Anon)),
        ("file", s.get(Stat::File)),
        ("kernel", s.kernel()),
        ("kmem", s.get(Stat::Kmem)),
        ("slab", s.slab()),
        ("slab_reclaimable", s.get(Stat::SlabReclaimable)),
        ("slab_unreclaimable", s.get(Stat::SlabUnreclaimable)),
    ] {
        let _ = writeln!(out, "{key} {bytes}");
    }
    out
}

/// A `0` or `1` written to `file`.
fn parse_flag(file: &str, value: &str) -> Result<bool> {
    match value.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(Error::Invalid(format!(
            "{file}: write 0 or 1, not {other:?}"
        ))),
    }
}

pub(crate) fn write(g: &Arc<GroupInner>, file: &str, value: &str) -> Result<()> {
    check_file(g, file)?;
    match file {
        "memory.oom.group" => {
            let on = parse_flag(file, value)?;
            g.oom_group.store(on, crate::sync::Ordering::Relaxed);
            Ok(())
        }
        "cgroup.freeze" => {
            let on = parse_flag(file, value)?;
            crate::group::kill::freeze(g, on);
            Ok(())
        }
        "cgroup.kill" => {
            if value.trim() != "1" {
                return Err(Error::Invalid(format!(
                    "cgroup.kill: write 1 to kill the subtree's killable units, not {value:?}"
                )));
            }
            crate::group::kill::kill_subtree(g);
            Ok(())
        }
        "memory.max" => {
            let max = parse_limit(file, value)?;
            g.counter.set_max(max);
            shrink_to(g, max, true);
            Ok(())
        }
        "memory.high" => {
            let high = parse_limit(file, value)?;
            g.counter.set_high(high);
            shrink_to(g, high, false);
            Ok(())
        }
        // Protection only changes what later reclaim may take (S13).
        "memory.min" => {
            let pages = parse_limit(file, value)?;
            g.min.store(pages, crate::sync::Ordering::Relaxed);
            Ok(())
        }
        "memory.low" => {
            let pages = parse_limit(file, value)?;
            g.low.store(pages, crate::sync::Ordering::Relaxed);
            Ok(())
        }
        "memory.peak" => {
            if value.trim() != "reset" {
                return Err(Error::Invalid(format!(
                    "memory.peak: write \"reset\" to restart it from the current usage, not {value:?}"
                )));
            }
            g.counter.reset_peak();
            Ok(())
        }
        "memory.reclaim" => {
            let value = value.trim();
            let wanted = parse_size(value).ok_or_else(|| {
                Error::Invalid(format!(
                    "memory.reclaim: {value:?} is not a size; write bytes with an optional K/M/G suffix"
                ))
            })?;
            let pages = usize::try_from(wanted / PAGE_SIZE as u64).unwrap_or(usize::MAX);
            let mut reclaimed = 0;
            while reclaimed < pages {
                let n = reclaim(g, pages - reclaimed);
                if n == 0 {
                    break;
                }
                reclaimed += n;
            }
            if reclaimed < pages {
                return Err(Error::Again {
                    path: g.path.clone(),
                    wanted,
                    reclaimed: bytes(reclaimed),
                });
            }
            Ok(())
        }
        _ => Err(Error::Invalid(format!("{file} is read-only"))),
    }
}

/// After a limit write: drain stocks once, then reclaim until usage fits.
/// For `memory.max`, a shortfall counts an `oom` event; the write stands.
fn shrink_to(g: &GroupInner, limit: usize, is_max: bool) {
    let mut drained = false;
    let mut retries = MAX_RECLAIM_RETRIES;
    loop {
        let usage = g.counter.usage();
        if usage <= limit {
            return;
        }
        if !drained {
            drained = true;
            crate::accounting::charge::drain_all_stocks(g.common.id);
            continue;
        }
        if retries > 0 {
            retries -= 1;
            if reclaim(g, usage - limit) > 0 {
                continue;
            }
        }
        if is_max {
            g.event(Event::Oom);
        }
        return;
    }
}
