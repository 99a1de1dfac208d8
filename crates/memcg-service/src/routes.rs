//! The HTTP interface: routes, the per-request group binding, and the
//! mapping of store errors to statuses.

use crate::metrics::metrics_text;
use crate::store::{read_bytes, Service, StoreError, Tenant};
use axum::extract::{Path, Query, RawPathParams, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Extension, Router};
use bytes::Bytes;
use memcg::FutureExt;
use serde::Deserialize;
use std::sync::Arc;

/// The service's routes:
///
/// | route | what |
/// |---|---|
/// | `PUT /tenants/{name}?max=64M&high=48M` | create a tenant (201), or set its limits (200) |
/// | `DELETE /tenants/{name}` | delete a tenant: its group is removed at once; its values stay readable, charged to `/tenants`, until evicted (204) |
/// | `GET /tenants` | `{"live": [...], "deleted": [...]}` (deleted: with values left) |
/// | `PUT /tenants/{name}/values/{key}` | store the body (204); 503 over `memory.high`, 507 at `memory.max` |
/// | `GET /tenants/{name}/values/{key}` | the value (200), a deleted tenant's too |
/// | `DELETE /tenants/{name}/values/{key}` | evict one value (204), a deleted tenant's too |
/// | `DELETE /tenants/{name}/values` | evict all of a tenant's values (204) |
/// | `GET /tenants/{name}/stats` | the tenant's memory files and values, as JSON |
/// | `GET /metrics` | every group's memory files, OpenMetrics text |
///
/// Every `/tenants/{name}/...` request runs bound to the tenant's group
/// (`.in_group`), from reading the body to building the response, on
/// whichever worker polls it: what it allocates is charged to the tenant. A
/// deleted tenant's requests run in `/tenants`, where its values are
/// charged. Tenant management and `/metrics` run where the worker is (the
/// root: the service's own bookkeeping is not billed to any tenant).
pub fn router(svc: Arc<Service>) -> Router {
    let tenant_routes = Router::new()
        .route(
            "/tenants/{name}/values/{key}",
            put(put_value).get(get_value).delete(delete_value),
        )
        .route("/tenants/{name}/values", delete(evict_all))
        .route("/tenants/{name}/stats", get(stats))
        .route_layer(middleware::from_fn_with_state(svc.clone(), in_tenant_group));
    Router::new()
        .route("/tenants", get(list))
        .route("/tenants/{name}", put(put_tenant).delete(delete_tenant))
        .route("/metrics", get(metrics))
        .merge(tenant_routes)
        .with_state(svc)
}

/// The tenant a request is for, resolved once by [`in_tenant_group`]:
/// `None` if it is not live (deleted, or never was).
#[derive(Clone)]
struct Scope(Option<Arc<Tenant>>);

/// Run the rest of the request bound to the tenant's group (or, for a
/// tenant not live, to the parent `/tenants`).
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
    let group = tenant
        .as_ref()
        .map_or_else(|| svc.parent().clone(), |t| t.group().clone());
    req.extensions_mut().insert(Scope(tenant));
    let response = next.run(req).in_group(group).await;
    // Out of the group again. hyper keeps each connection's last response
    // header map to parse the next request into: built in the group, it
    // would stay charged to the tenant while the connection lives. The
    // copy made here is charged where the worker is.
    let (mut head, body) = response.into_parts();
    head.headers = head.headers.clone();
    Response::from_parts(head, body)
}

fn error(e: StoreError) -> Response {
    let status = match e {
        StoreError::NoTenant | StoreError::NoValue => StatusCode::NOT_FOUND,
        StoreError::OverHigh => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::OverMax => StatusCode::INSUFFICIENT_STORAGE,
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
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
    body: Bytes,
) -> Response {
    let Some(tenant) = tenant else {
        return error(StoreError::NoTenant);
    };
    match svc.put_value(&tenant, key, &body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
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

async fn metrics(State(svc): State<Arc<Service>>) -> Response {
    let text = metrics_text(svc.hierarchy());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}
