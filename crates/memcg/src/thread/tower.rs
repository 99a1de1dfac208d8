//! A tower layer that runs each request as a killable unit of a group
//! (S12, S14, S15), for services built on tower or axum (feature `tower`).
//!
//! [`KillableLayer`] wraps a service; a closure picks, per request, the
//! group it runs in (`None`: not bound, as without the layer). A bound
//! request is the future
//! [`in_group_killable`](crate::FutureExt::in_group_killable) makes: the
//! inner service's `call`, every poll of its future and its drop run
//! charged to the group, on whichever thread polls it; `cgroup.kill` on the
//! group or an ancestor, or the OOM killer, drops the request inside the
//! group at its next poll (what it allocated is given back there); and
//! while the group is frozen the request is not polled.
//!
//! A killed request ends in one of two ways, as a tower or an axum user
//! expects:
//!
//! - an error, by default: the service's error type is
//!   [`KillableError<E>`], `Killed` or the inner service's `Inner(E)`, as
//!   tower's `Timeout` turns a timeout into an error for a later layer
//!   (`HandleErrorLayer`, a retry) to handle;
//! - a response, with [`KillableLayer::on_killed`]: the closure's response
//!   is the request's and the error type stays the inner one, as
//!   tower-http's timeout layer answers 408 itself. axum's `Router::layer`
//!   and `route_layer` take only services that cannot fail: use this one.
//!
//! The unit is registered, and the closure runs, outside the group: the
//! bookkeeping of a request is not billed to its tenant.

use crate::group::kill::Killed;
use crate::interface::hierarchy::Group;
use crate::thread::future::FutureExt;
use crate::thread::killable::Killable;
use crate::thread::task::Scope;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Binds each request to the group a closure picks, as a killable unit
/// (S14): the inner service's `call`, every poll of its future and its
/// drop run charged to the group; a kill drops the request inside the
/// group at its next poll; a frozen group's requests wait for the thaw.
/// `P` is the picker, `Fn(&Request) -> Option<Group>`; `K` says what a
/// killed request becomes: a [`KillableError::Killed`] by default, a
/// response with [`on_killed`](Self::on_killed).
///
/// With axum: `route_layer(KillableLayer::new(tenant_of).on_killed(f))`,
/// where `tenant_of` reads the tenant from the request (its path, or an
/// extension an outer middleware set) and `f` makes, say, a 507 response;
/// the `memcg-service` crate's router does this.
///
/// ```
/// use memcg::{KillableError, KillableLayer, Killed};
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// let h = memcg::Hierarchy::new();
/// let tenant = h.create("/tenant").unwrap();
///
/// // A request finishes at once, or runs until something stops it.
/// let handler = service_fn(|req: &'static str| async move {
///     if req == "forever" {
///         std::future::pending::<()>().await;
///     }
///     Ok::<_, std::convert::Infallible>(format!("did {req}"))
/// });
/// let g = tenant.clone();
/// let pick = move |_: &&'static str| Some(g.clone());
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// rt.block_on(async {
///     // By default a killed request is an error.
///     let mut svc = KillableLayer::new(pick.clone()).layer(handler.clone());
///     assert_eq!(svc.ready().await.unwrap().call("work").await.unwrap(), "did work");
///     let forever = svc.ready().await.unwrap().call("forever");
///     tenant.kill(); // `cgroup.kill`: kills the request bound by `call`
///     assert!(matches!(forever.await, Err(KillableError::Killed)));
///
///     // Or it gets a response of its own, and the service cannot fail
///     // (what axum's `Router::layer` wants).
///     let mut svc = KillableLayer::new(pick)
///         .on_killed(|_: Killed| "507 Insufficient Storage".to_string())
///         .layer(handler);
///     let forever = svc.ready().await.unwrap().call("forever");
///     tenant.kill();
///     assert_eq!(forever.await.unwrap(), "507 Insufficient Storage");
/// });
/// ```
#[derive(Debug, Clone)]
pub struct KillableLayer<P, K = KilledAsError> {
    pick: P,
    on_killed: K,
}

impl<P> KillableLayer<P> {
    /// A layer that binds each request to the group `pick` returns for it
    /// (`None`: the request runs unbound); a killed request is a
    /// [`KillableError::Killed`].
    pub fn new(pick: P) -> Self {
        KillableLayer {
            pick,
            on_killed: KilledAsError,
        }
    }
}

impl<P, K> KillableLayer<P, K> {
    /// Answer a killed request with `respond(Killed)` instead of an error:
    /// the service's error type is then the inner service's (infallible
    /// for axum). Any [`OnKilled`] will do; a closure
    /// `Fn(Killed) -> Response` is one.
    pub fn on_killed<F>(self, respond: F) -> KillableLayer<P, F> {
        KillableLayer {
            pick: self.pick,
            on_killed: respond,
        }
    }
}

impl<S, P: Clone, K: Clone> Layer<S> for KillableLayer<P, K> {
    type Service = KillableService<S, P, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KillableService {
            inner,
            pick: self.pick.clone(),
            on_killed: self.on_killed.clone(),
        }
    }
}

/// The service [`KillableLayer`] makes: runs each request of `S` bound to
/// the group `P` picks for it, as a killable unit (see the layer's docs).
#[derive(Debug, Clone)]
pub struct KillableService<S, P, K = KilledAsError> {
    inner: S,
    pick: P,
    on_killed: K,
}

impl<S, P> KillableService<S, P> {
    /// `inner`, with each request bound to the group `pick` returns for it;
    /// the same as `KillableLayer::new(pick).layer(inner)`.
    pub fn new(inner: S, pick: P) -> Self {
        KillableService {
            inner,
            pick,
            on_killed: KilledAsError,
        }
    }
}

impl<S, P, K> KillableService<S, P, K> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, K, Request> Service<Request> for KillableService<S, P, K>
where
    S: Service<Request>,
    P: Fn(&Request) -> Option<Group>,
    K: OnKilled<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = K::Error;
    type Future = KillableResponseFuture<S::Future, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.on_killed.inner_error(e))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let on_killed = self.on_killed.clone();
        let Some(group) = (self.pick)(&request) else {
            let state = State::Unbound {
                future: self.inner.call(request),
            };
            return KillableResponseFuture { state, on_killed };
        };
        // What `call` allocates for the request is the request's: charged
        // to the group, as its polls are.
        let future = {
            let _scope = Scope::enter(&group.inner);
            self.inner.call(request)
        };
        // The unit is registered outside the group: it is not the tenant's.
        let state = State::Bound {
            future: future.in_group_killable(group),
        };
        KillableResponseFuture { state, on_killed }
    }
}

/// What a killed request becomes, and how the inner service's errors are
/// reported, for a [`KillableService`] answering `Response` with inner
/// errors `E`. Implemented by [`KilledAsError`] (the default) and by every
/// closure `Fn(Killed) -> Response`.
pub trait OnKilled<Response, E> {
    /// The service's error type.
    type Error;

    /// The outcome of a request killed by `cgroup.kill` or the OOM killer.
    fn killed(&self, killed: Killed) -> Result<Response, Self::Error>;

    /// An error of the inner service, as the service reports it.
    fn inner_error(&self, error: E) -> Self::Error;
}

/// A killed request is an error, [`KillableError::Killed`]; the inner
/// service's errors are [`KillableError::Inner`]. The default of
/// [`KillableLayer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KilledAsError;

impl<Response, E> OnKilled<Response, E> for KilledAsError {
    type Error = KillableError<E>;

    fn killed(&self, _: Killed) -> Result<Response, KillableError<E>> {
        Err(KillableError::Killed)
    }

    fn inner_error(&self, error: E) -> KillableError<E> {
        KillableError::Inner(error)
    }
}

impl<Response, E, F: Fn(Killed) -> Response> OnKilled<Response, E> for F {
    type Error = E;

    fn killed(&self, killed: Killed) -> Result<Response, E> {
        Ok(self(killed))
    }

    fn inner_error(&self, error: E) -> E {
        error
    }
}

/// The error of a [`KillableService`] by default: the request was killed
/// (S14), or the inner service failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillableError<E> {
    /// `cgroup.kill` or the OOM killer stopped the request: its future was
    /// dropped inside its group.
    Killed,
    /// The inner service's error.
    Inner(E),
}

impl<E> KillableError<E> {
    /// Whether the request was killed.
    pub fn is_killed(&self) -> bool {
        matches!(self, KillableError::Killed)
    }

    /// The inner service's error, if that is what it is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            KillableError::Killed => None,
            KillableError::Inner(e) => Some(e),
        }
    }
}

impl<E> From<Killed> for KillableError<E> {
    fn from(_: Killed) -> Self {
        KillableError::Killed
    }
}

impl<E: std::fmt::Display> std::fmt::Display for KillableError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillableError::Killed => write!(f, "request {Killed}"),
            KillableError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for KillableError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KillableError::Killed => Some(&Killed),
            // Transparent: the inner error speaks for itself.
            KillableError::Inner(e) => e.source(),
        }
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Bound { #[pin] future: Killable<F> },
        Unbound { #[pin] future: F },
    }
}

pin_project_lite::pin_project! {
    /// The response future of a [`KillableService`]: the inner service's,
    /// bound to its group as a killable unit, or as it is for a request the
    /// picker left unbound.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct KillableResponseFuture<F, K> {
        #[pin]
        state: State<F>,
        on_killed: K,
    }
}

impl<F, K> KillableResponseFuture<F, K> {
    /// The group the request is bound to (`None`: unbound).
    pub fn group(&self) -> Option<&Group> {
        match &self.state {
            State::Bound { future } => Some(future.group()),
            State::Unbound { .. } => None,
        }
    }
}

impl<F, K, Response, E> Future for KillableResponseFuture<F, K>
where
    F: Future<Output = Result<Response, E>>,
    K: OnKilled<Response, E>,
{
    type Output = Result<Response, K::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The response of a killed request is made here, out of the group:
        // its inner future was dropped inside it.
        let out = match this.state.project() {
            StateProj::Bound { future } => match std::task::ready!(future.poll(cx)) {
                Ok(out) => out,
                Err(killed) => return Poll::Ready(this.on_killed.killed(killed)),
            },
            StateProj::Unbound { future } => std::task::ready!(future.poll(cx)),
        };
        Poll::Ready(out.map_err(|e| this.on_killed.inner_error(e)))
    }
}
