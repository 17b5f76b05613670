//! The admin routes: the bearer-token guard and model reloads.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::AppState;

use super::*;

/// Why a reload failed, for the caller: what is wrong with the file, never
/// where the server keeps it (the full chain, path included, goes to the log).
fn public_reason(e: &crate::LoadError) -> String {
    use reelkit_ranker::Error as E;
    match e {
        crate::LoadError::Model(m) => match m {
            E::Io { source, .. } => format!("the model file cannot be read: {source}"),
            E::Arrow { source, .. } => format!("not a reelkit model file: {source}"),
            E::InvalidModel { reason, .. } => format!("not a reelkit model file: {reason}"),
            E::InvalidIndex { reason, .. } => format!("not a usable IVF index: {reason}"),
            E::Incompatible {
                found, supported, ..
            } => format!(
                "model format version {found} is not supported (this build reads {supported:?})"
            ),
            other => other.to_string(),
        },
        crate::LoadError::Io { source, .. } => format!("a file cannot be read: {source}"),
        other => other.to_string(),
    }
}

/// Refuses admin requests a browser could send on a web page's behalf (any
/// request with an `Origin` or a cross-site `Sec-Fetch-Site`: a blind
/// cross-site POST needs no preflight), and, when the server has an admin
/// token, requests without `Authorization: Bearer TOKEN`.
pub(super) async fn admin_guard(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let from_browser = headers.contains_key(header::ORIGIN)
        || headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() != b"none");
    if from_browser {
        tracing::warn!(
            path = req.uri().path(),
            "admin request from a browser refused (Origin or Sec-Fetch-Site present)"
        );
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "admin endpoints do not answer browser requests",
        )
        .into_response();
    }
    if let Some(token) = &state.config.admin_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            tracing::warn!(
                path = req.uri().path(),
                "admin request without the admin token refused"
            );
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "admin endpoints need `Authorization: Bearer <admin token>`",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Equality whose time does not depend on where the bytes first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /admin/reload[?model=NAME]`: one model, or every model when no name
/// is given; a model that fails to load keeps serving its old version (409).
/// Every reload is logged with its caller and outcome.
pub(super) async fn reload(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let caller = peer.map_or_else(|| "unknown".to_string(), |p| p.0 .0.to_string());
    let names: Vec<String> = match q.get("model") {
        Some(name) => {
            if state.model_named(name).is_none() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_model",
                    format!(
                        "no model named `{name}` is loaded (loaded: {})",
                        state.model_names().join(", ")
                    ),
                ));
            }
            vec![name.clone()]
        }
        None => state.model_names().iter().map(|s| s.to_string()).collect(),
    };
    let s = state.clone();
    let wanted = names.clone();
    let results = tokio::task::spawn_blocking(move || {
        wanted.iter().map(|n| s.reload_model(n)).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "reload_failed",
            e.to_string(),
        )
    })?;
    let mut failures = Vec::new();
    let mut done = Vec::new();
    for (name, r) in names.iter().zip(results) {
        match r {
            Ok((previous, current)) => {
                tracing::info!(%caller, model = %name, %previous, %current, "reload: loaded");
                done.push(
                    json!({"model": name, "model_version": current, "previous_version": previous}),
                )
            }
            Err(e) => {
                let serving = state
                    .model_named(name)
                    .map(|m| m.version.clone())
                    .unwrap_or_default();
                tracing::warn!(
                    %caller, model = %name, %serving,
                    "reload: failed, old model kept: {}", crate::chain(&e)
                );
                failures.push(format!(
                    "model `{name}`: reload failed, still serving {serving}: {}",
                    public_reason(&e)
                ))
            }
        }
    }
    if !failures.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "reload_failed",
            failures.join("; "),
        ));
    }
    if done.len() == 1 {
        return Ok(Json(done.remove(0)));
    }
    Ok(Json(json!({ "models": done })))
}
