//! reelkit-serve: the ranker behind HTTP.
//!
//! [`router`] gives an `axum::Router` that another axum application can nest;
//! [`serve`] runs it on a listener with graceful shutdown and SIGHUP reload.
//! Scoring runs on tokio's blocking pool, bounded by a timeout; the model is
//! swapped atomically on reload, and requests in flight finish on the model
//! they started with.
//!
//! Serve a model (here a tiny one trained on the spot), nest the router in your
//! own axum app, and ask it for recommendations over HTTP (the example's
//! blocking loopback `client` module is behind the `client` feature, for tests and
//! load generators; it is not part of the service):
//!
//! ```
//! use std::sync::Arc;
//!
//! use reelkit_ranker::{train, Model, TrainControl, TrainParams, TrainingData};
//! use reelkit_serve::{client::{Client, LocalServer}, AppState, ServeConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let users: Vec<u64> = (0..40).map(|i| i / 4).collect();
//! let videos: Vec<u64> = (0..40).map(|i| 100 + (i * 7) % 13).collect();
//! let data = TrainingData::from_triplets(&users, &videos, None, 0.0)?;
//! let params = TrainParams { factors: 4, epochs: 5, ..TrainParams::default() }.check()?;
//! let factors = train(&data.matrix, &params, &mut TrainControl::default())?;
//! let dir = std::env::temp_dir().join(format!("reelkit-serve-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("model.arrow");
//! Model::new(&data, factors, params.get().clone()).save(&path)?;
//!
//! let state = Arc::new(AppState::open(&path, None, ServeConfig::default())?);
//!
//! // In your service: your routes beside reelkit's, under a prefix.
//! let _app: axum::Router = axum::Router::new()
//!     .route("/healthz", axum::routing::get(|| async { "ok" }))
//!     .nest("/reco", reelkit_serve::router(state.clone()));
//! // (then `axum::serve(tokio::net::TcpListener::bind(addr).await?, _app)`)
//!
//! // Here: reelkit's router alone on a loopback port, asked over HTTP.
//! let server = LocalServer::start(state)?;
//! let mut client = Client::connect(server.addr)?;
//! let reply = client.post_json("/v1/recommend", &serde_json::json!({"user_id": 3, "k": 2}))?;
//! assert_eq!(reply.status, 200);
//! assert_eq!(reply.json()?["items"].as_array().map(Vec::len), Some(2));
//! // Bad requests are 4xx with a JSON reason, never a panic.
//! let bad = client.post_json("/v1/recommend", &serde_json::json!({"user_id": 3, "k": 0}))?;
//! assert_eq!(bad.status, 422);
//! server.stop()?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

mod api;
mod batcher;
#[cfg(feature = "client")]
pub mod client;
mod exposition;
mod exposures;
mod ids;
mod listen;
mod loaded;
mod metrics;
mod state;

use std::future::Future;

/// An error and its causes, `: `-separated (errors here do not repeat their
/// source's text in their own message).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
use std::sync::Arc;

pub use api::{
    admin_router, router, ApiError, Item, RecommendBody, RecommendResponse, ScoreBody,
    ScoreResponse, SimilarResponse, VideoScore, OPENAPI,
};
pub use exposition::render as render_metrics;
pub use exposures::{ExposureConfig, ExposureError, ExposureLog};
pub use ids::Id;
pub use metrics::{Metrics, BUCKETS};
pub use reelkit_assign::Allocation;
pub use state::{AppState, Catalog, Design, LoadError, Loaded, ServeConfig};

/// Serves the admin routes ([`admin_router`]) on `listener` (bind it to
/// loopback or an operators' network) until the runtime stops.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        admin_router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}

/// Serves `state` on `listener` until `shutdown` resolves; on Unix, SIGHUP
/// reloads every model file. Slow and idle connections are closed after
/// [`ServeConfig::header_read_timeout`], connections past
/// [`ServeConfig::max_connections`] get a 503. On shutdown, no new
/// connection is accepted, open connections are still served for half a
/// second (a request written on an idle keep-alive connection just before
/// the signal is answered, with `connection: close`), requests in flight
/// finish (within [`ServeConfig::shutdown_grace`]) and the exposure log (if
/// any) writes what it holds and closes its file.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let s = state.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let s = s.clone();
                match tokio::task::spawn_blocking(move || s.reload_all()).await {
                    Ok(results) => {
                        for (model, r) in results {
                            match r {
                                Ok((old, new)) => {
                                    tracing::info!(%model, %old, %new, "SIGHUP: model reloaded")
                                }
                                Err(e) => tracing::error!(
                                    %model,
                                    "SIGHUP: reload failed, old model kept: {}", chain(&e)
                                ),
                            }
                        }
                    }
                    Err(e) => tracing::error!("SIGHUP: reload task failed: {e}"),
                }
            }
        });
    }
    let c = &state.config;
    let limits = listen::Limits {
        header_read_timeout: c.header_read_timeout,
        max_connections: c.max_connections,
        shutdown_grace: c.shutdown_grace,
    };
    listen::run(
        listener,
        router(state.clone()),
        limits,
        shutdown,
        state.connections_refused.clone(),
    )
    .await;
    if state.exposures().is_some() {
        let s = state.clone();
        let closing = tokio::task::spawn_blocking(move || s.exposures().map(ExposureLog::close));
        let _ = closing.await;
    }
    Ok(())
}
