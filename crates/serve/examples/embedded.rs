//! A small service that embeds reelkit two ways: the `Ranker` called directly
//! from its own handler, and reelkit-serve's router nested under `/reco`.
//!
//! ```sh
//! cargo run --release -- demo                      # writes notebooks-output/demo/data/model.arrow
//! cargo run -p reelkit-serve --example embedded -- notebooks-output/demo/data/model.arrow
//! curl -s localhost:3000/feed/123                  # this service's own route
//! curl -s -XPOST localhost:3000/reco/v1/recommend -d '{"user_id": 123, "k": 5}'
//! ```

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use reelkit_ranker::Request;
use reelkit_serve::{AppState, ServeConfig};

/// This service's own endpoint: the ten best videos for a user, straight from
/// the shared ranker (no HTTP hop).
async fn feed(State(state): State<Arc<AppState>>, Path(user): Path<u64>) -> Json<Vec<u64>> {
    let model = state.model();
    let recs =
        tokio::task::spawn_blocking(move || model.ranker.recommend(user, 10, &Request::default()))
            .await
            .map(|r| r.items.iter().map(|x| x.item_id).collect())
            .unwrap_or_default();
    Json(recs)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: embedded MODEL.arrow [ADDR]")?;
    let addr = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let state = Arc::new(AppState::open(path.as_ref(), None, ServeConfig::default())?);
    let app = Router::new()
        .route("/feed/{user}", get(feed))
        .with_state(state.clone())
        .nest("/reco", reelkit_serve::router(state));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
