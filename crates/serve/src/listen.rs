//! The accept loop: HTTP/1 connections with a header-read (and idle
//! keep-alive) timeout, a cap on open connections, and a graceful stop that
//! lets accepted requests finish within a deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower_service::Service;

/// How connections are held.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A connection that has not sent a whole request head within this time
    /// (slowloris) or sits idle between requests this long is closed.
    pub header_read_timeout: Duration,
    /// Connections open at once; past it a connection gets a 503 and is closed.
    pub max_connections: usize,
    /// After the stop signal, accepted requests have this long to finish.
    pub shutdown_grace: Duration,
}

/// The body of the 503 a connection past the cap gets before it is closed.
const BUSY: &str =
    r#"{"error":"too_many_connections","detail":"the server is at its connection cap"}"#;

/// How long, after the stop signal, open connections keep being served
/// (each response then says `connection: close`) before idle ones are
/// closed: a client may have written a request on an idle keep-alive
/// connection just before the signal, and closing that connection unread
/// would leave the request unanswered.
const DRAIN: Duration = Duration::from_millis(500);

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting; open connections are served for [`DRAIN`] more (answers close
/// them), then every connection finishes its request in flight (idle ones
/// close at once) within the grace period.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send,
    refused: Arc<AtomicU64>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let draining = Arc::new(AtomicBool::new(false));
    let mut conns = JoinSet::new();
    let last_warned = AtomicU64::new(0);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors or a reset before accept: wait a
                    // moment instead of spinning, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let Ok(permit) = open.clone().try_acquire_owned() else {
            let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per second at most, with the running count.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if last_warned.swap(now, Ordering::Relaxed) != now {
                tracing::warn!(
                    "connection cap ({}) reached: answering 503 and closing ({n} refused so far)",
                    limits.max_connections
                );
            }
            tokio::spawn(busy(stream));
            continue;
        };
        let app = app.clone();
        let mut stop = stop_rx.clone();
        let draining = draining.clone();
        conns.spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                let draining = draining.clone();
                async move {
                    let mut res = app.call(req).await?;
                    if draining.load(Ordering::SeqCst) {
                        res.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(res)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let started = tokio::time::Instant::now();
    draining.store(true, Ordering::SeqCst);
    let drain = DRAIN.min(limits.shutdown_grace);
    let _ = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    let _ = stop_tx.send(true);
    let rest = limits.shutdown_grace.saturating_sub(started.elapsed());
    let drained =
        tokio::time::timeout(rest, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "{} connections still busy after the {:?} grace period: closing them",
            conns.len(),
            limits.shutdown_grace
        );
        conns.abort_all();
    }
}

/// Answers a connection past the cap with a 503 ([`BUSY`], without reading
/// its request) and closes it.
async fn busy(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BUSY}",
        BUSY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
