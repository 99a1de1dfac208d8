//! `KillableLayer` (feature `tower`): a tower service's requests run bound
//! to the group a closure picks (S12), as killable units (S14), held while
//! the group is frozen (S15). With [`memcg::MemcgAlloc`] as the global
//! allocator, so what a request allocates is charged and an OOM can kill it.
//!
//! `cargo test -p memcg --features tower --test tower`
#![cfg(feature = "tower")]

use memcg::{global, Group, KillableError, KillableLayer, Killed};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{service_fn, Layer, Service, ServiceExt};

#[global_allocator]
static A: memcg::MemcgAlloc = memcg::MemcgAlloc;

fn current(g: &Group) -> u64 {
    g.read("memory.current").unwrap().trim().parse().unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Yield once to the executor (wakes itself).
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx: &mut Context<'_>| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// S12: the inner service's `call` and every poll of its future charge the
/// group the picker returns, and its drop uncharges it; a request the
/// picker leaves unbound charges where the thread is.
#[test]
fn request_call_and_polls_charge_the_picked_group() {
    let h = global();
    let g = h.create("/tower-charge").unwrap();
    // Each request: 1 MiB allocated by `call`, 256 KiB by a poll, held
    // over a yield; answers the group's memory.current while it holds both.
    let watched = g.clone();
    let handler = service_fn(move |bind: bool| {
        let from_call = vec![1u8; 1 << 20];
        let watched = watched.clone();
        async move {
            let from_poll = vec![2u8; 256 << 10];
            yield_once().await;
            let now = current(&watched);
            drop((from_call, from_poll));
            Ok::<_, Infallible>((bind, now))
        }
    });
    let picked = g.clone();
    let pick = move |bind: &bool| bind.then(|| picked.clone());
    let svc = KillableLayer::new(pick).layer(handler);
    let (bound, charged) = rt().block_on(svc.clone().oneshot(true)).unwrap();
    assert!(bound);
    // (More than a charge stock's slack, 256 KiB, could make up.)
    assert!(charged >= 1280 << 10, "charged {charged}");
    h.quiesce();
    assert_eq!(current(&g), 0, "the request's drop uncharged it");
    let (_, unbound) = rt().block_on(svc.oneshot(false)).unwrap();
    assert_eq!(unbound, 0, "an unbound request charged the group");
}

/// S14: a request that runs past its group's `memory.max` is stopped by the
/// OOM killer at its next poll: dropped inside the group (its memory given
/// back), it ends with `KillableError::Killed`, or with the `on_killed`
/// response. `memory.oom.group` 1 makes it an `oom_group_kill`.
#[test]
fn runaway_request_is_killed_by_the_oom_killer() {
    let h = global();
    let g = h.create("/tower-oom").unwrap();
    g.write("memory.max", "1M").unwrap();
    g.write("memory.oom.group", "1").unwrap();
    // Grows by 64 KiB a poll, up to 8 MiB.
    let handler = service_fn(|_: ()| async {
        let mut held = Vec::new();
        for _ in 0..128 {
            held.push(vec![3u8; 64 << 10]);
            yield_once().await;
        }
        Ok::<_, Infallible>(held.len())
    });
    let picked = g.clone();
    let pick = move |_: &()| Some(picked.clone());

    let svc = KillableLayer::new(pick.clone()).layer(handler);
    let out = rt().block_on(svc.oneshot(()));
    assert_eq!(out, Err(KillableError::Killed));
    h.quiesce();
    assert_eq!(current(&g), 0, "given back");
    let events = g.events();
    assert_eq!(
        (events.oom_kill, events.oom_group_kill),
        (1, 1),
        "{events:?}"
    );

    let svc = KillableLayer::new(pick)
        .on_killed(|_: Killed| usize::MAX)
        .layer(handler);
    assert_eq!(rt().block_on(svc.oneshot(())), Ok(usize::MAX));
    h.quiesce();
    assert_eq!(current(&g), 0);
    assert_eq!(g.events().oom_kill, 2);
}

/// S15: a request of a frozen group is not polled, and runs after the
/// thaw; a kill ends it even while frozen.
#[test]
fn frozen_group_holds_requests_until_thaw() {
    let h = global();
    let g = h.create("/tower-freeze").unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let seen = ran.clone();
    let handler = service_fn(move |_: ()| {
        let seen = seen.clone();
        async move {
            seen.store(true, SeqCst);
            Ok::<_, Infallible>("ran")
        }
    });
    let picked = g.clone();
    let mut svc = KillableLayer::new(move |_: &()| Some(picked.clone())).layer(handler);
    g.freeze(true);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut held = Box::pin(svc.call(()));
    for _ in 0..10 {
        assert!(held.as_mut().poll(&mut cx).is_pending());
    }
    assert!(!ran.load(SeqCst), "not polled while frozen");
    g.freeze(false);
    assert_eq!(held.as_mut().poll(&mut cx), Poll::Ready(Ok("ran")));

    g.freeze(true);
    let mut doomed = Box::pin(svc.call(()));
    assert!(doomed.as_mut().poll(&mut cx).is_pending());
    assert_eq!(g.kill(), 1);
    let out = doomed.as_mut().poll(&mut cx);
    assert_eq!(out, Poll::Ready(Err(KillableError::Killed)));
    g.freeze(false);
}

/// The inner service's errors pass through: as `KillableError::Inner` by
/// default (its `Display` is the inner error's), as they are with
/// `on_killed`.
#[test]
fn inner_errors_pass_through() {
    let g = global().create("/tower-errors").unwrap();
    let handler = service_fn(|_: ()| async { Err::<(), _>(std::fmt::Error) });
    let picked = g.clone();
    let pick = move |_: &()| Some(picked.clone());
    let svc = KillableLayer::new(pick.clone()).layer(handler);
    let err = rt().block_on(svc.oneshot(())).unwrap_err();
    assert_eq!(err, KillableError::Inner(std::fmt::Error));
    assert_eq!(err.to_string(), std::fmt::Error.to_string());
    assert!(!err.is_killed());
    let killed = KillableError::<std::fmt::Error>::from(Killed);
    assert!(killed.to_string().contains("killed by memcg"), "{killed}");

    let svc = KillableLayer::new(pick)
        .on_killed(|_: Killed| ())
        .layer(handler);
    assert_eq!(rt().block_on(svc.oneshot(())), Err(std::fmt::Error));
}
