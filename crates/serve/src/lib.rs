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
mod exposures;
mod metrics;
mod state;

use std::future::Future;
use std::sync::Arc;

pub use api::{
    router, ApiError, Item, RecommendBody, RecommendResponse, ScoreBody, ScoreResponse,
    SimilarResponse, VideoScore, OPENAPI,
};
pub use exposures::{ExposureConfig, ExposureError, ExposureLog};
pub use metrics::{render as render_metrics, Metrics, BUCKETS};
pub use reelkit_assign::Split;
pub use state::{AppState, Catalog, Design, LoadError, Loaded, ServeConfig};

/// Serves `state` on `listener` until `shutdown` resolves; on Unix, SIGHUP
/// reloads every model file. On shutdown, requests in flight finish and the
/// exposure log (if any) writes what it holds and closes its file.
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
                                    "SIGHUP: reload failed, old model kept: {e}"
                                ),
                            }
                        }
                    }
                    Err(e) => tracing::error!("SIGHUP: reload task failed: {e}"),
                }
            }
        });
    }
    let served = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    if state.exposures().is_some() {
        let s = state.clone();
        let closing = tokio::task::spawn_blocking(move || s.exposures().map(ExposureLog::close));
        let _ = closing.await;
    }
    served
}
