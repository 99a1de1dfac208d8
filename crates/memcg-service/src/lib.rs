//! # memcg-service: a multi-tenant async key-value service on memcg
//!
//! Tenants are groups under `/tenants` of [`memcg::global()`]; every request
//! for a tenant runs bound to its group with
//! [`FutureExt::in_group`](memcg::FutureExt::in_group), so the values it
//! stores — plain `Vec`s and `HashMap`s, through the global allocator
//! [`memcg::MemcgAlloc`] — are charged to the tenant, whichever tokio worker
//! polls the request (S12). Each tenant may have a `memory.max` and a
//! `memory.high`:
//!
//! - over `memory.high`, a tenant's writes get 503, decided from its
//!   `memory.events` (see [`Tenant::over_high`]), not from a failed
//!   allocation;
//! - a write that makes it hit `memory.max` is undone and gets 507;
//! - a tenant that runs past its `memory.max` has its requests in flight
//!   killed (S14): each request is a killable unit of its tenant's group,
//!   bound with memcg's tower layer [`memcg::KillableLayer`], and every
//!   tenant's group has `memory.oom.group` 1, so the OOM killer stops all of
//!   them; each is dropped inside the group, giving back what it allocated
//!   (an upload in flight is copied into the tenant as it arrives), and
//!   answered 507, while the other tenants are served.
//!
//! An operator can freeze a tenant (its requests wait, S15), thaw it, and
//! kill its requests in flight.
//!
//! Deleting a tenant removes its group at once (S1); its values stay
//! readable, charged to `/tenants`, and uncharge it as they are evicted
//! (S2). `/metrics` serves every group's memory files as OpenMetrics text.
//!
//! The routes are listed at [`router`]. The binaries `memcg-service`
//! (`MemcgAlloc`) and `memcg-service-mimalloc` (mimalloc, for comparison)
//! serve it; `memcg-service-load` drives both with a fixed request count.
//!
//! ```no_run
//! #[global_allocator]
//! static A: memcg::MemcgAlloc = memcg::MemcgAlloc;
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let svc = memcg_service::Service::new(memcg::global(), "/tenants").unwrap();
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     memcg_service::serve(listener, svc).await
//! }
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
mod metrics;
mod routes;
mod store;

pub use metrics::metrics_text;
pub use routes::router;
pub use store::{read_bytes, Admitted, Service, StoreError, Tenant, Values, MAX_VALUE_BYTES};

use axum::serve::ListenerExt;
use std::sync::Arc;

/// Serve `svc` on `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, svc: Arc<Service>) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // Requests and responses are single small writes: no Nagle delay.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(svc)).await
}

/// The service's runtime: multi-thread tokio with `workers` worker threads
/// (tokio's default: one per core), each returning its memcg object stock
/// whenever it goes idle ([`memcg::drain_stocks`] on park).
///
/// Why: a request's scope returns the worker's object stock at the end of
/// each poll, but hyper frees a response (headers, body) after the scope,
/// in the connection's task, and such a free *adopts* the worker's stock
/// for the object's group, as the kernel's `refill_obj_stock` does. Up to
/// a page per worker would then stay pre-charged to a tenant, or to
/// `/tenants`, until the worker next served another group; draining on park
/// makes every group's `memory.current` exact once the service is idle.
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder
        .on_thread_park(memcg::drain_stocks)
        .enable_all()
        .build()
}

/// The servers' `main`: `[--addr ADDR] [--workers N]` (defaults:
/// `$MEMCG_SERVICE_ADDR` or `127.0.0.1:8080`, tokio's worker count). Prints
/// `listening on http://ADDR` once bound (the load driver reads it), then
/// serves until killed. `allocator` names the global allocator in that line.
pub fn server_main(allocator: &str) -> std::process::ExitCode {
    match run_server(allocator) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memcg-service: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_server(allocator: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut addr =
        std::env::var("MEMCG_SERVICE_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_string());
    let mut workers = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--addr" => addr = value()?,
            "--workers" => workers = Some(value()?.parse::<usize>()?),
            _ => return Err(format!("usage: [--addr ADDR] [--workers N], not {arg}").into()),
        }
    }
    runtime(workers)?.block_on(async {
        let svc = Service::new(memcg::global(), "/tenants")?;
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        use std::io::Write;
        let mut out = std::io::stdout();
        writeln!(
            out,
            "memcg-service ({allocator}) listening on http://{}",
            listener.local_addr()?
        )?;
        out.flush()?;
        serve(listener, svc).await?;
        Ok(())
    })
}
