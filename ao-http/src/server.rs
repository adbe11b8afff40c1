//! The server: one catch-all warp filter over [`Node::handle`], served on our own accept loop so
//! the limits a public node needs are enforced — connection count, header-read timeout (slow
//! clients are dropped), header count and size, body size — and shutdown is graceful.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};

use crate::error::{ApiError, Error};
use crate::handler::{HttpRequest, HttpResponse, Node};

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, and returns when they have.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the server stops (after [`ServerHandle::shutdown`] or `stop_signal`).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

#[derive(Debug)]
struct BodyTooLarge(usize);
impl warp::reject::Reject for BodyTooLarge {}

#[derive(Debug)]
struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

/// No part of the request body arrived within [`crate::HttpConfig::body_read_timeout`].
#[derive(Debug)]
struct BodyTimedOut;
impl warp::reject::Reject for BodyTimedOut {}

async fn read_body(
    declared: Option<u64>,
    stream: impl Stream<Item = Result<impl Buf, warp::Error>>,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, warp::Rejection> {
    // A body announced larger than the limit is refused before any of it is read.
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(warp::reject::custom(BodyTooLarge(limit)));
    }
    let mut stream = std::pin::pin!(stream);
    let mut out = BytesMut::new();
    loop {
        let next = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| warp::reject::custom(BodyTimedOut))?;
        let Some(chunk) = next else {
            break;
        };
        let mut chunk = chunk.map_err(|_| warp::reject::custom(BodyUnreadable))?;
        if out.len() + chunk.remaining() > limit {
            return Err(warp::reject::custom(BodyTooLarge(limit)));
        }
        while chunk.has_remaining() {
            let c = chunk.chunk();
            out.extend_from_slice(c);
            let n = c.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

fn to_warp(resp: HttpResponse) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(resp.body.into());
    *r.status_mut() =
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = r.headers_mut();
    for (k, v) in resp.headers {
        let (Ok(name), Ok(value)) = (
            warp::http::HeaderName::from_bytes(k.as_bytes()),
            warp::http::HeaderValue::from_maybe_shared(v),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    r
}

/// The one place warp rejections become responses (the pipeline itself never rejects).
async fn recover(rej: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, text) = if let Some(BodyTooLarge(limit)) = rej.find() {
        (413, ApiError::TooLarge { limit: *limit }.to_string())
    } else if rej.find::<BodyTimedOut>().is_some() {
        (408, "the request body stopped arriving".to_owned())
    } else if rej.find::<BodyUnreadable>().is_some() {
        (400, "the request body could not be read".to_owned())
    } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
        (405, "method not allowed".to_owned())
    } else {
        (400, "malformed request".to_owned())
    };
    Ok(to_warp(HttpResponse {
        status,
        headers: vec![
            ("content-type".into(), Bytes::from_static(b"text/plain")),
            (
                "access-control-allow-origin".into(),
                Bytes::from_static(b"*"),
            ),
        ],
        body: Bytes::from(text),
    }))
}

/// The catch-all filter: any method, any path.
pub fn filter(
    node: Arc<Node>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let limit = node.config().max_body_bytes;
    let idle = node.config().body_read_timeout;
    warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(
            warp::header::optional::<u64>("content-length")
                .and(warp::body::stream())
                .and_then(move |declared, s| read_body(declared, s, limit, idle)),
        )
        .and_then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body: Bytes| {
                let node = node.clone();
                async move {
                    let target = if query.is_empty() {
                        path.as_str().to_owned()
                    } else {
                        format!("{}?{query}", path.as_str())
                    };
                    let headers = headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes())))
                        .collect();
                    let req = HttpRequest {
                        method: method.as_str().to_owned(),
                        target,
                        headers,
                        body,
                    };
                    Ok::<_, warp::Rejection>(to_warp(node.handle(req).await))
                }
            },
        )
        .recover(recover)
        .unify()
}

/// Binds and starts serving. The server stops when `stop_signal` completes or the handle's
/// [`ServerHandle::shutdown`] is called, after in-flight requests finish.
pub async fn serve(
    node: Arc<Node>,
    stop_signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<ServerHandle, Error> {
    let config = node.config().clone();
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| Error::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.bind,
        source,
    })?;
    let (tx, rx) = oneshot::channel::<()>();
    let service = warp::service(filter(node));
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut stop = std::pin::pin!(async move {
            tokio::select! {
                _ = stop_signal => {}
                _ = rx => {}
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_headers(config.max_headers)
            .max_buf_size(config.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        let builder = Arc::new(builder);
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = &mut stop => break,
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = &mut stop => break,
            };
            let (stream, _peer) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let svc = TowerToHyperService::new(service.clone());
            let builder = builder.clone();
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        graceful.shutdown().await;
    });
    Ok(ServerHandle {
        addr,
        shutdown: Some(tx),
        task,
    })
}
