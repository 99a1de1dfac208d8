//! The HTTP interface: routes, the per-request group binding (a killable
//! unit of the tenant's group, through memcg's tower layer), and the
//! mapping of store errors to statuses.

use crate::metrics::metrics_text;
use crate::store::{read_bytes, Admitted, Service, StoreError, Tenant, MAX_VALUE_BYTES};
use axum::body::Body;
use axum::extract::{Path, Query, RawPathParams, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use memcg::{FutureExt, Group, KillableLayer, Killed};
use serde::Deserialize;
use std::sync::Arc;

/// The service's routes:
///
/// | route | what |
/// |---|---|
/// | `PUT /tenants/{name}?max=64M&high=48M` | create a tenant (201), or set its limits (200); a new tenant's group has `memory.oom.group` 1 |
/// | `DELETE /tenants/{name}` | delete a tenant: its group is removed at once (thawed first); its values stay readable, charged to `/tenants`, until evicted (204) |
/// | `POST /tenants/{name}/freeze` | freeze a tenant (`cgroup.freeze` 1): its requests, in flight and new, are held until the thaw (204) |
/// | `POST /tenants/{name}/thaw` | thaw it (`cgroup.freeze` 0): the held requests complete (204) |
/// | `POST /tenants/{name}/kill` | kill its requests in flight (`cgroup.kill`), frozen ones too: each gets 507; `{"killed": n}` (200) |
/// | `GET /tenants` | `{"live": [...], "deleted": [...]}` (deleted: with values left) |
/// | `PUT /tenants/{name}/values/{key}` | store the body, at most 2 MiB (204); 503 over `memory.high`, 507 at `memory.max`, 413 if longer |
/// | `GET /tenants/{name}/values/{key}` | the value (200), a deleted tenant's too |
/// | `DELETE /tenants/{name}/values/{key}` | evict one value (204), a deleted tenant's too |
/// | `DELETE /tenants/{name}/values` | evict all of a tenant's values (204) |
/// | `GET /tenants/{name}/stats` | the tenant's memory files and values, as JSON (like its other requests, held while it is frozen) |
/// | `GET /metrics` | every group's memory files, OpenMetrics text |
///
/// Every `/tenants/{name}/values...` and `/stats` request of a live tenant
/// runs as a killable unit of the tenant's group ([`KillableLayer`]), from
/// reading the body to building the response, on whichever worker polls
/// it: what it allocates is charged to the tenant, an upload as its chunks
/// arrive. When the tenant runs past its `memory.max` (the OOM killer,
/// S14: with `memory.oom.group` 1 it takes all of them) or is killed, each
/// of its requests in flight is dropped inside the group at its next poll,
/// giving back what it allocated, and answered 507; while it is frozen
/// they wait (S15; `/metrics` still answers). A deleted tenant's requests
/// run in `/tenants`, where its values are charged, not killable. Tenant
/// management, `freeze`, `thaw`, `kill` and `/metrics` run where the worker
/// is (the root: the service's own bookkeeping is not billed to any
/// tenant).
pub fn router(svc: Arc<Service>) -> Router {
    let tenant_routes = Router::new()
        .route(
            "/tenants/{name}/values/{key}",
            put(put_value).get(get_value).delete(delete_value),
        )
        .route("/tenants/{name}/values", delete(evict_all))
        .route("/tenants/{name}/stats", get(stats))
        // Inner: bind a live tenant's request to its group, killable.
        .route_layer(KillableLayer::new(tenant_group).on_killed(killed))
        // Outer: resolve the tenant once, for the binding and the handlers.
        .route_layer(middleware::from_fn_with_state(svc.clone(), in_tenant_group));
    Router::new()
        .route("/tenants", get(list))
        .route("/tenants/{name}", put(put_tenant).delete(delete_tenant))
        .route("/tenants/{name}/freeze", post(freeze))
        .route("/tenants/{name}/thaw", post(thaw))
        .route("/tenants/{name}/kill", post(kill))
        .route("/metrics", get(metrics))
        .merge(tenant_routes)
        .with_state(svc)
}

/// The tenant a request is for, resolved once by [`in_tenant_group`]:
/// `None` if it is not live (deleted, or never was).
#[derive(Clone)]
struct Scope(Option<Arc<Tenant>>);

/// Resolve the request's tenant; a live tenant's request is bound by the
/// [`KillableLayer`] inside ([`tenant_group`]), a deleted tenant's runs in
/// the parent `/tenants`.
async fn in_tenant_group(
    State(svc): State<Arc<Service>>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let name = params
        .iter()
        .find_map(|(k, v)| (k == "name").then_some(v))
        .unwrap_or_default();
    let tenant = svc.tenant(name);
    let live = tenant.is_some();
    req.extensions_mut().insert(Scope(tenant));
    let response = if live {
        next.run(req).await
    } else {
        next.run(req).in_group(svc.parent().clone()).await
    };
    // Out of the group again. hyper keeps each connection's last response
    // header map to parse the next request into: built in the group, it
    // would stay charged to the tenant while the connection lives. The
    // copy made here is charged where the worker is.
    let (mut head, body) = response.into_parts();
    head.headers = head.headers.clone();
    Response::from_parts(head, body)
}

/// The [`KillableLayer`]'s picker: a live tenant's group.
fn tenant_group(req: &Request) -> Option<Group> {
    let Scope(tenant) = req.extensions().get::<Scope>()?;
    tenant.as_ref().map(|t| t.group().clone())
}

/// A tenant request killed by the OOM killer or `POST .../kill`.
fn killed(_: Killed) -> Response {
    let why = "request killed: its tenant ran past memory.max, or was killed";
    (StatusCode::INSUFFICIENT_STORAGE, why).into_response()
}

fn error(e: StoreError) -> Response {
    let status = match e {
        StoreError::NoTenant | StoreError::NoValue => StatusCode::NOT_FOUND,
        StoreError::OverHigh => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::OverMax => StatusCode::INSUFFICIENT_STORAGE,
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        StoreError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
    };
    let mut response = (status, e.to_string()).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// Query of `PUT /tenants/{name}`: sizes as memcg's files take them.
#[derive(Debug, Deserialize)]
struct Limits {
    max: Option<String>,
    high: Option<String>,
}

async fn put_tenant(
    State(svc): State<Arc<Service>>,
    Path(name): Path<String>,
    Query(limits): Query<Limits>,
) -> Response {
    match svc.put_tenant(&name, limits.max.as_deref(), limits.high.as_deref()) {
        Ok(true) => StatusCode::CREATED.into_response(),
        Ok(false) => StatusCode::OK.into_response(),
        Err(e) => error(e),
    }
}

async fn delete_tenant(State(svc): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    match svc.delete_tenant(&name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

async fn list(State(svc): State<Arc<Service>>) -> Response {
    let (live, deleted) = svc.names();
    axum::Json(serde_json::json!({ "live": live, "deleted": deleted })).into_response()
}

async fn put_value(
    State(svc): State<Arc<Service>>,
    Extension(Scope(tenant)): Extension<Scope>,
    Path((_, key)): Path<(String, String)>,
    body: Body,
) -> Response {
    let Some(tenant) = tenant else {
        return error(StoreError::NoTenant);
    };
    let admitted = match svc.admit_write(&tenant) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    let value = match read_value(body, &tenant, admitted).await {
        Ok(v) => v,
        Err(e) => return error(e),
    };
    match svc.put_value(&tenant, admitted, key, value) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

/// Read a value's body, copying each chunk as it arrives: run in the
/// tenant's group, an upload in flight is the tenant's, held to its
/// `memory.max`. Past it, the upload stops at once with 507 (the tenant
/// hit `memory.max` since the write was admitted), and the OOM killer stops
/// the tenant's other requests in flight. The body itself sits in the
/// connection's buffers, allocated outside the group.
async fn read_value(
    mut body: Body,
    tenant: &Tenant,
    admitted: Admitted,
) -> Result<Bytes, StoreError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = body.frame().await {
        let chunk = chunk.map_err(|e| StoreError::Invalid(format!("reading the body: {e}")))?;
        let Ok(data) = chunk.into_data() else {
            continue;
        };
        len += data.len();
        if len > MAX_VALUE_BYTES {
            return Err(StoreError::TooLarge);
        }
        chunks.push(Bytes::copy_from_slice(&data));
        admitted.check(tenant)?;
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        // The value is stored in one piece, exactly its length.
        _ => {
            let mut value = Vec::with_capacity(len);
            for c in chunks.drain(..) {
                value.extend_from_slice(&c);
            }
            Bytes::from(value)
        }
    })
}

async fn get_value(
    State(svc): State<Arc<Service>>,
    Extension(Scope(tenant)): Extension<Scope>,
    Path((name, key)): Path<(String, String)>,
) -> Response {
    match svc.get_value(tenant.as_deref(), &name, &key) {
        Some(value) => value.into_response(),
        None => error(StoreError::NoValue),
    }
}

async fn delete_value(
    State(svc): State<Arc<Service>>,
    Extension(Scope(tenant)): Extension<Scope>,
    Path((name, key)): Path<(String, String)>,
) -> Response {
    match svc.evict(tenant.as_deref(), &name, Some(&key)) {
        0 => error(StoreError::NoValue),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn evict_all(
    State(svc): State<Arc<Service>>,
    Extension(Scope(tenant)): Extension<Scope>,
    Path(name): Path<String>,
) -> Response {
    if tenant.is_none() && svc.retired_usage(&name).is_none() {
        return error(StoreError::NoTenant);
    }
    svc.evict(tenant.as_deref(), &name, None);
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(
    State(svc): State<Arc<Service>>,
    Extension(Scope(tenant)): Extension<Scope>,
    Path(name): Path<String>,
) -> Response {
    let live = tenant.as_ref().and_then(|t| t.usage().map(|u| (t, u)));
    let json = match live {
        Some((t, (values, bytes))) => {
            let g = t.group();
            let file = |f: &str| match read_bytes(g, f) {
                u64::MAX => serde_json::json!("max"),
                v => serde_json::json!(v),
            };
            let events = g.events();
            serde_json::json!({
                "tenant": name,
                "group": g.path(),
                "deleted": false,
                "values": values,
                "stored_bytes": bytes,
                "throttled": t.throttled(),
                "memory.current": file("memory.current"),
                "memory.peak": file("memory.peak"),
                "memory.high": file("memory.high"),
                "memory.max": file("memory.max"),
                "memory.events": {
                    "low": events.low, "high": events.high,
                    "max": events.max, "oom": events.oom,
                    "oom_kill": events.oom_kill,
                    "oom_group_kill": events.oom_group_kill,
                },
            })
        }
        None => match svc.retired_usage(&name) {
            Some((values, bytes)) => serde_json::json!({
                "tenant": name,
                "group": svc.parent().path(),
                "deleted": true,
                "values": values,
                "stored_bytes": bytes,
            }),
            None => return error(StoreError::NoTenant),
        },
    };
    axum::Json(json).into_response()
}

async fn freeze(State(svc): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    match svc.freeze(&name, true) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

async fn thaw(State(svc): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    match svc.freeze(&name, false) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

async fn kill(State(svc): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    match svc.kill(&name) {
        Ok(killed) => axum::Json(serde_json::json!({ "killed": killed })).into_response(),
        Err(e) => error(e),
    }
}

async fn metrics(State(svc): State<Arc<Service>>) -> Response {
    let text = metrics_text(svc.hierarchy());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}
