//! Stopping a tenant, not the service (S14, S15), over real HTTP: a tenant
//! that runs past its `memory.max` has its requests in flight killed by the
//! OOM killer (its group has `memory.oom.group` 1) and its memory given
//! back, while other tenants are served; an operator freezes, thaws and
//! kills a tenant's requests.
//!
//! As in `tests/service.rs`: the service runs on 127.0.0.1 in a
//! multi-thread tokio runtime with memcg as the global allocator, each test
//! keeps its tenants under a parent group of its own, and exact numbers are
//! read after `Hierarchy::quiesce` once the workers are idle.

use bytes::Bytes;
use memcg_service::client::{upload, Client};
use memcg_service::read_bytes;
use std::net::SocketAddr;
use std::time::Duration;

mod common;
use common::*;

/// Wait (at most 10 s) until `f()` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A `cgroup.events` key of `path`.
fn cgroup_event(path: &str, key: &str) -> u64 {
    let events = h().read(path, "cgroup.events").unwrap();
    events
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {events:?}"))
}

/// A client that writes and reads back values of `tenant` until `stop`;
/// panics on any other answer than success. How many requests it made.
fn steady_client(
    addr: SocketAddr,
    tenant: &'static str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut c = Client::connect(addr).await.unwrap();
        let mut n = 0;
        while !*stop.borrow() {
            let path = format!("/tenants/{tenant}/values/k{}", n % 50);
            let v = Bytes::from(vec![n as u8; 2048]);
            assert_eq!(c.put(&path, v.clone()).await.unwrap().0, 204, "{path}");
            assert_eq!(c.get(&path).await.unwrap(), (200.try_into().unwrap(), v));
            n += 2;
        }
        n
    })
}

/// S14: a tenant uploading past its `memory.max` is stopped by the OOM
/// killer. Its `memory.oom.group` takes every request it has in flight:
/// the runaway upload and a slow one that did nothing wrong both get 507,
/// dropped inside the group, so its `memory.current` falls back to near 0,
/// while another tenant's requests are all served meanwhile. Then the
/// tenant is served again.
#[test]
fn runaway_tenant_requests_get_507_and_give_memory_back_while_others_are_served() {
    run(runaway_tenant_async());
}

async fn runaway_tenant_async() {
    const MAX: u64 = 256 << 10;
    let addr = start("/runaway").await;
    let mut c = Client::connect(addr).await.unwrap();
    create(&mut c, "hog", "?max=256K").await;
    create(&mut c, "calm", "?max=64M").await;
    assert_eq!(h().read("/runaway/hog", "memory.oom.group").unwrap(), "1\n");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let calm = steady_client(addr, "calm", stopped);

    // A slow, small upload of the hog, in flight before it runs away.
    let slow = tokio::spawn(async move {
        let path = "/tenants/hog/values/slow";
        upload(addr, path, 64 << 10, 1024, Duration::from_millis(20)).await
    });
    until("the slow upload is bound", || {
        cgroup_event("/runaway/hog", "populated") == 1
    })
    .await;
    // 1.5 MiB into a tenant of 256 KiB, 16 KiB at a time.
    let path = "/tenants/hog/values/huge";
    let huge = upload(addr, path, 1536 << 10, 16 << 10, Duration::from_millis(2)).await;
    assert_eq!(huge.unwrap(), 507, "the runaway upload is killed");
    assert_eq!(slow.await.unwrap().unwrap(), 507, "its other request too");

    let events = h().get("/runaway/hog").unwrap().events();
    assert!(events.oom >= 1, "{events:?}");
    assert_eq!(events.oom_group_kill, 1, "{events:?}");
    assert!(events.oom_kill >= 2, "both requests: {events:?}");
    // What the uploads had copied is given back (0 in practice; a page of
    // slack for a sub-page remainder).
    let hog = || current("/runaway/hog");
    let left = settled_at_most(0, hog).await;
    assert!(left <= 4096, "memory.current {left} after the kill");
    assert!(h().get("/runaway/hog").unwrap().events().max >= 1);
    let peak = read_bytes(&h().get("/runaway/hog").unwrap(), "memory.peak");
    assert!(peak >= MAX, "it did run up to memory.max: peak {peak}");
    // The upload stops a chunk past it.
    assert!(peak < 2 * MAX, "memory.peak {peak}");

    // The other tenant was served all along, and never killed.
    stop.send(true).unwrap();
    let served = calm.await.unwrap();
    assert!(served > 0);
    let calm_events = h().get("/runaway/calm").unwrap().events();
    assert_eq!((calm_events.oom, calm_events.oom_kill), (0, 0));

    // The tenant itself is served again.
    let v = Bytes::from(vec![7u8; 4096]);
    let path = "/tenants/hog/values/after";
    assert_eq!(c.put(path, v.clone()).await.unwrap().0, 204);
    assert_eq!(c.get(path).await.unwrap(), (200.try_into().unwrap(), v));
    let (status, stats) = c.get("/tenants/hog/stats").await.unwrap();
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["memory.events"]["oom_group_kill"], 1);
    assert_eq!(stats["values"], 1, "the killed uploads stored nothing");
}

/// S15: a frozen tenant's requests, in flight and new, are held, not
/// answered, while other tenants are served; after the thaw they all
/// complete.
#[test]
fn frozen_tenant_requests_wait_and_complete_after_thaw() {
    run(frozen_tenant_async());
}

async fn frozen_tenant_async() {
    let addr = start("/frozen").await;
    let mut c = Client::connect(addr).await.unwrap();
    create(&mut c, "cold", "").await;
    create(&mut c, "warm", "").await;
    let v = Bytes::from(vec![1u8; 1024]);
    assert_eq!(
        c.put("/tenants/cold/values/a", v.clone()).await.unwrap().0,
        204
    );

    // An upload is in flight when the tenant is frozen (its last byte
    // is sent in 16 ms).
    let slow = tokio::spawn(async move {
        let path = "/tenants/cold/values/slow";
        upload(addr, path, 8 << 10, 1024, Duration::from_millis(2)).await
    });
    until("the slow upload is bound", || {
        cgroup_event("/frozen/cold", "populated") == 1
    })
    .await;
    assert_eq!(c.post("/tenants/cold/freeze").await.unwrap().0, 204);
    assert_eq!(cgroup_event("/frozen/cold", "frozen"), 1);

    // New requests are held too.
    let held: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await.unwrap();
                if i % 2 == 0 {
                    c.get("/tenants/cold/values/a").await.unwrap().0
                } else {
                    let path = format!("/tenants/cold/values/new{i}");
                    c.put(&path, Bytes::from(vec![2u8; 512])).await.unwrap().0
                }
            })
        })
        .collect();
    // Others are served meanwhile, for a while.
    let mut i = 0;
    let since = std::time::Instant::now();
    while since.elapsed() < Duration::from_millis(300) {
        let path = format!("/tenants/warm/values/k{}", i % 20);
        assert_eq!(c.put(&path, v.clone()).await.unwrap().0, 204);
        i += 1;
    }
    assert!(!slow.is_finished(), "the upload in flight is held");
    for h in &held {
        assert!(!h.is_finished(), "a new request is held");
    }
    assert_eq!(cgroup_event("/frozen/cold", "frozen"), 1);

    assert_eq!(c.post("/tenants/cold/thaw").await.unwrap().0, 204);
    assert_eq!(slow.await.unwrap().unwrap(), 204);
    for (i, h) in held.into_iter().enumerate() {
        let want = if i % 2 == 0 { 200 } else { 204 };
        assert_eq!(h.await.unwrap(), want, "request {i}");
    }
    assert_eq!(cgroup_event("/frozen/cold", "frozen"), 0);
    let (_, stats) = c.get("/tenants/cold/stats").await.unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["values"], 4, "a, slow, new1, new3");
    assert_eq!(c.post("/tenants/nobody/freeze").await.unwrap().0, 404);
}

/// S14 `cgroup.kill`: `POST /tenants/{name}/kill` ends the tenant's
/// requests in flight with 507 — a running upload, and requests held by a
/// freeze (a kill overrides it) — and counts no OOM kill; the tenant's
/// later requests are served.
#[test]
fn kill_ends_a_tenants_requests_in_flight() {
    run(kill_async());
}

async fn kill_async() {
    let addr = start("/killed").await;
    let mut c = Client::connect(addr).await.unwrap();
    create(&mut c, "doomed", "").await;
    let v = Bytes::from(vec![3u8; 1024]);
    assert_eq!(
        c.put("/tenants/doomed/values/a", v.clone())
            .await
            .unwrap()
            .0,
        204
    );

    let slow = tokio::spawn(async move {
        let path = "/tenants/doomed/values/slow";
        upload(addr, path, 64 << 10, 1024, Duration::from_millis(20)).await
    });
    until("the slow upload is bound", || {
        cgroup_event("/killed/doomed", "populated") == 1
    })
    .await;
    let (status, body) = c.post("/tenants/doomed/kill").await.unwrap();
    assert_eq!(status, 200);
    let killed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(killed["killed"], 1);
    assert_eq!(slow.await.unwrap().unwrap(), 507);

    // Frozen, then killed: held requests end too.
    assert_eq!(c.post("/tenants/doomed/freeze").await.unwrap().0, 204);
    let held: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await.unwrap();
                c.get("/tenants/doomed/values/a").await.unwrap().0
            })
        })
        .collect();
    // Each kill takes the requests bound so far: kill until all three were.
    let mut total = 0;
    for _ in 0..1000 {
        let (_, body) = c.post("/tenants/doomed/kill").await.unwrap();
        let killed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        total += killed["killed"].as_u64().unwrap();
        if total >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(total, 3);
    for h in held {
        assert_eq!(h.await.unwrap(), 507);
    }
    assert_eq!(cgroup_event("/killed/doomed", "frozen"), 1, "still frozen");
    assert_eq!(c.post("/tenants/doomed/thaw").await.unwrap().0, 204);

    let events = h().get("/killed/doomed").unwrap().events();
    assert_eq!((events.oom, events.oom_kill), (0, 0), "no OOM: {events:?}");
    assert_eq!(c.get("/tenants/doomed/values/a").await.unwrap().1, v);
    assert_eq!(c.post("/tenants/nobody/kill").await.unwrap().0, 404);
}

/// Deleting a frozen tenant thaws it first: its held requests complete
/// (reading its values, now the deleted tenant's) instead of waiting for a
/// thaw that could not come.
#[test]
fn deleting_a_frozen_tenant_releases_its_requests() {
    run(delete_frozen_async());
}

async fn delete_frozen_async() {
    let addr = start("/gone-frozen").await;
    let mut c = Client::connect(addr).await.unwrap();
    create(&mut c, "ice", "").await;
    let v = Bytes::from(vec![4u8; 1024]);
    assert_eq!(
        c.put("/tenants/ice/values/a", v.clone()).await.unwrap().0,
        204
    );
    assert_eq!(c.post("/tenants/ice/freeze").await.unwrap().0, 204);
    let held = tokio::spawn(async move {
        let mut c = Client::connect(addr).await.unwrap();
        c.get("/tenants/ice/values/a").await.unwrap()
    });
    until("the request is bound", || {
        cgroup_event("/gone-frozen/ice", "populated") == 1
    })
    .await;
    assert_eq!(c.delete("/tenants/ice").await.unwrap().0, 204);
    assert_eq!(held.await.unwrap(), (200.try_into().unwrap(), v));
}
