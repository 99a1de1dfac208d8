//! What the service's HTTP tests share: memcg as the global allocator, the
//! service started on 127.0.0.1 with its tenants under a parent group of
//! the test's own, its runtime, and waits for exact numbers once the
//! workers are idle (they return their object stocks when they park, a
//! moment after the last response; `Hierarchy::quiesce` drains the rest).

// Each test crate uses part of this.
#![allow(dead_code)]

use bytes::Bytes;
use memcg::{global, Hierarchy};
use memcg_service::client::Client;
use memcg_service::{read_bytes, Service};
use std::net::SocketAddr;
use std::time::Duration;

#[global_allocator]
static A: memcg::MemcgAlloc = memcg::MemcgAlloc;

/// Start the service with its tenants under `parent`; its address.
pub async fn start(parent: &str) -> SocketAddr {
    let svc = Service::new(global(), parent).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(memcg_service::serve(listener, svc));
    addr
}

/// Run a test on the service's runtime, with two workers (a 2-core VM).
pub fn run(test: impl std::future::Future<Output = ()>) {
    memcg_service::runtime(Some(2)).unwrap().block_on(test);
}

pub fn h() -> &'static Hierarchy {
    global()
}

pub fn current(path: &str) -> u64 {
    read_bytes(&h().get(path).unwrap(), "memory.current")
}

/// Create `tenant` under the service's parent with the query `limits`.
pub async fn create(c: &mut Client, tenant: &str, limits: &str) {
    let (status, _) = c
        .put(&format!("/tenants/{tenant}{limits}"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, 201, "create {tenant}");
}

/// `f()` once it reads `want`, waiting (at most 10 s) for the service to go
/// idle. The last value read.
pub async fn settled(want: u64, f: impl Fn() -> u64) -> u64 {
    settle(|v| v == want, f).await
}

/// `f()` once it reads at most `want`, waiting as [`settled`] does.
pub async fn settled_at_most(want: u64, f: impl Fn() -> u64) -> u64 {
    settle(|v| v <= want, f).await
}

async fn settle(done: impl Fn(u64) -> bool, f: impl Fn() -> u64) -> u64 {
    for _ in 0..1000 {
        h().quiesce();
        if done(f()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h().quiesce();
    f()
}
