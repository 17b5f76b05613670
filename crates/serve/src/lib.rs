//! reelkit-serve: the ranker behind HTTP.
//!
//! [`router`] gives an `axum::Router` that another axum application can nest;
//! [`serve`] runs it on a listener with graceful shutdown and SIGHUP reload.
//! Scoring runs on tokio's blocking pool, bounded by a timeout; the model is
//! swapped atomically on reload, and requests in flight finish on the model
//! they started with.

mod api;
mod batcher;
pub mod client;
mod metrics;
mod state;

use std::future::Future;
use std::sync::Arc;

pub use api::{
    router, ApiError, Item, RecommendBody, RecommendResponse, ScoreBody, ScoreResponse,
    SimilarResponse, VideoScore, OPENAPI,
};
pub use metrics::{render as render_metrics, Metrics, BUCKETS};
pub use state::{AppState, Catalog, LoadError, Loaded, ServeConfig};

/// Serves `state` on `listener` until `shutdown` resolves; on Unix, SIGHUP
/// reloads the model file.
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
                let r = tokio::task::spawn_blocking(move || s.reload()).await;
                match r {
                    Ok(Ok((old, new))) => tracing::info!(%old, %new, "SIGHUP: model reloaded"),
                    Ok(Err(e)) => tracing::error!("SIGHUP: reload failed, old model kept: {e}"),
                    Err(e) => tracing::error!("SIGHUP: reload task failed: {e}"),
                }
            }
        });
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
