//! The metrics HTTP endpoint: `/metrics`, `/health`, `/ready`.
//!
//! hyper 1.x through hyper-util's auto connection builder (HTTP/1.1 only:
//! scrapers do not use h2c). Bounded on every side: at most
//! [`MAX_CONNECTIONS`] connections at once, request heads must arrive within
//! [`HEADER_READ_TIMEOUT`] and fit the 16 KiB read buffer, request bodies are
//! never read. Failures are logged with `tracing`; a panicking [`crate::Source`]
//! costs one 500, not the process.
//!
//! A full house never starves `/health`: the listener keeps accepting, and a
//! new connection beyond the limit closes the oldest open one (idle sockets
//! are the oldest; a real probe lives for milliseconds). Waiting for a free
//! slot instead would let a few hundred idle sockets fail a liveness probe.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};

use crate::exporter::{Exporter, Format};
use crate::snapshot::Source;

/// Connections served at once; one more closes the oldest.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a client has to send a complete request head (also the idle
/// keep-alive limit: hyper starts this timer as it waits for the next head).
/// Probes and scrapers send theirs at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Read buffer limit per connection (hyper's minimum is 8 KiB).
const MAX_BUF_SIZE: usize = 16 * 1024;
/// How long shutdown waits for responses in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The endpoint's bounds (the defaults are the constants above; tests use
/// small ones).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting, lets requests in
/// progress finish (up to 5 s) and returns.
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn Source>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, source, shutdown, Limits::default()).await
}

/// [`serve`] with explicit bounds.
pub async fn serve_with(
    listener: TcpListener,
    source: Arc<dyn Source>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    let exporter = Arc::new(Exporter::new(source.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF_SIZE)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    let mut open = Oldest::default();
    let mut shutdown = std::pin::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics endpoint listening");
    }

    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                    continue;
                }
            },
        };
        if open.reap(&mut tasks) >= limits.max_connections.max(1) {
            tracing::debug!("metrics endpoint: connection limit reached, closing the oldest");
            open.close_oldest();
        }
        let _ = stream.set_nodelay(true);
        let exporter = exporter.clone();
        let source = source.clone();
        let service = service_fn(move |req| {
            let resp = respond(&req, &exporter, source.as_ref());
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        let task = tasks.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "metrics endpoint: connection error");
            }
        });
        open.push(task, limits.max_connections);
    }

    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("metrics endpoint: connections still open after shutdown grace; closing them");
        }
    }
    tasks.shutdown().await;
}

/// Open connection tasks in accept order, and how many were aborted but
/// not yet reaped (still in the JoinSet, no longer open).
#[derive(Default)]
struct Oldest {
    order: VecDeque<AbortHandle>,
    aborting: usize,
}

impl Oldest {
    fn push(&mut self, h: AbortHandle, limit: usize) {
        if self.order.len() > 2 * limit {
            self.order.retain(|h| !h.is_finished());
        }
        self.order.push_back(h);
    }

    /// Reaps finished tasks; returns how many connections are still open.
    fn reap(&mut self, tasks: &mut JoinSet<()>) -> usize {
        while let Some(r) = tasks.try_join_next() {
            if r.is_err_and(|e| e.is_cancelled()) {
                self.aborting = self.aborting.saturating_sub(1);
            }
        }
        tasks.len().saturating_sub(self.aborting)
    }

    /// Aborts the oldest connection still running.
    fn close_oldest(&mut self) {
        while let Some(h) = self.order.pop_front() {
            if !h.is_finished() {
                h.abort();
                self.aborting += 1;
                return;
            }
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn text_owned(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = text(status, "");
    *resp.body_mut() = Full::new(Bytes::from(body));
    resp
}

/// `head`, then one `warning: ...` line per note.
fn with_notes(head: &str, notes: Vec<String>) -> String {
    let mut s = format!("{head}\n");
    for n in notes {
        s.push_str("warning: ");
        s.push_str(&n);
        s.push('\n');
    }
    s
}

/// Routes one request. Never reads the request body.
fn respond(
    req: &Request<Incoming>,
    exporter: &Exporter,
    source: &dyn Source,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/health" | "/ready") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/health" => text(StatusCode::OK, "ok\n"),
        "/ready" => match catch_unwind(AssertUnwindSafe(|| (source.ready(), source.ready_notes())))
        {
            Ok((true, notes)) => text_owned(StatusCode::OK, with_notes("ready", notes)),
            Ok((false, notes)) => text_owned(
                StatusCode::SERVICE_UNAVAILABLE,
                with_notes("not ready", notes),
            ),
            Err(_) => {
                tracing::error!("metrics endpoint: readiness check panicked");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "readiness check failed\n",
                )
            }
        },
        _ => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            match catch_unwind(AssertUnwindSafe(|| exporter.render(format))) {
                Ok(Ok(body)) => {
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    let headers = resp.headers_mut();
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(format.content_type()),
                    );
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    resp
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "metrics endpoint: encoding failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
                }
                Err(_) => {
                    tracing::error!("metrics endpoint: snapshot or encoding panicked");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
                }
            }
        }
    }
}
