//! Routes and handlers. Every error is JSON `{error, detail}` with a 4xx (or
//! 503 when scoring times out); nothing a client sends yields a 500.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use reelkit_assign::{splitmix64, Team};
use reelkit_ranker::{Recommendations, Request as RankRequest, Surface};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::exposition::render;
use crate::exposures::Exposure;
use crate::ids::Id;
use crate::state::{AppState, Design, Loaded};

mod admin;
use admin::{admin_guard, reload};

/// The committed OpenAPI description, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status (4xx for what the client sent, 5xx for the server).
    pub status: StatusCode,
    /// A stable machine-readable code (`unknown_user`, `body_too_large`, …).
    pub error: &'static str,
    /// What went wrong, in words, naming the offending field or value.
    pub detail: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
        }
    }
    fn invalid(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail)
    }
}

impl From<&reelkit_ranker::Error> for ApiError {
    /// Every ranker error a request can meet, with its status: what the
    /// client sent is 404 or 422; what the server holds is 500.
    fn from(e: &reelkit_ranker::Error) -> ApiError {
        use reelkit_ranker::Error as E;
        let detail = crate::chain(e);
        match e {
            E::UnknownUser(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_user", detail),
            E::UnknownItem(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_video", detail),
            E::InvalidParam { .. }
            | E::DimensionMismatch { .. }
            | E::LengthMismatch { .. }
            | E::NotFinite { .. }
            | E::InvalidInput(_)
            | E::Empty => ApiError::invalid(detail),
            E::Io { .. }
            | E::Arrow { .. }
            | E::InvalidModel { .. }
            | E::InvalidIndex { .. }
            | E::Incompatible { .. }
            | E::TooManyItemsForEase { .. }
            | E::Stopped => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model_error", detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "detail": self.detail})),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Reads the whole body within the size limit and parses it: syntax errors
/// are 400, well-formed JSON of the wrong shape 422, oversized bodies 413.
async fn json_body<T: for<'de> Deserialize<'de>>(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    body: Body,
) -> ApiResult<T> {
    let limit = state.config.max_body_bytes;
    // A declared length over the limit is refused before any byte is read
    // (and before hyper answers `Expect: 100-continue`).
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body exceeds {limit} bytes"),
        ));
    }
    let read = tokio::time::timeout(
        state.config.body_read_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {:?}",
                state.config.body_read_timeout
            ),
        )
    })?;
    let bytes: Bytes = read.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_big {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body exceeds {limit} bytes"),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string())
        }
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Runs scoring on the blocking pool within the request timeout.
async fn off_thread<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<T> {
    match tokio::time::timeout(state.config.timeout, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "scoring_failed",
            format!("the scoring task did not finish: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "scoring took longer than {} ms",
                state.config.timeout.as_millis()
            ),
        )),
    }
}

fn check_k(state: &AppState, k: i64) -> ApiResult<usize> {
    let max = state.config.max_k;
    if k < 1 || k as u64 > max as u64 {
        return Err(ApiError::invalid(format!(
            "k must be in 1..={max}, got {k}"
        )));
    }
    Ok(k as usize)
}

fn check_ids(state: &AppState, what: &str, ids: &[Id]) -> ApiResult<()> {
    if ids.len() > state.config.max_ids {
        return Err(ApiError::invalid(format!(
            "`{what}` holds {} ids; at most {} are allowed",
            ids.len(),
            state.config.max_ids
        )));
    }
    Ok(())
}

/// `POST /v1/recommend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendBody {
    /// The user to recommend for (unknown users get the popular fallback,
    /// or a folded-in embedding when `history` is given). A number, or a
    /// string for a model trained on string ids.
    pub user_id: Id,
    /// How many videos, 1..=`max_k` (default 10); read signed so that a
    /// negative value is a clear 422, not a parse error.
    #[serde(default = "default_k")]
    pub k: i64,
    /// `reels`, `feed` or `watch`: a per-surface model answers with the
    /// user's vector there; with `--videos`, only videos eligible there.
    #[serde(default)]
    pub surface: Option<String>,
    /// Videos that must not be returned (already seen).
    #[serde(default)]
    pub exclude: Vec<Id>,
    /// Fresh history: the user's embedding is folded in from these videos.
    #[serde(default)]
    pub history: Vec<Id>,
    /// At most this many videos per creator (needs `--videos`).
    #[serde(default)]
    pub max_per_creator: Option<u32>,
    /// Re-rank the candidates with the model's value model, when it has one.
    #[serde(default)]
    pub use_value_model: bool,
    /// The caller's id for this request: it seeds the interleaving's coin
    /// flips (a replayed request interleaves the same way) and is logged with
    /// the exposure. The server numbers requests that bring none.
    #[serde(default)]
    pub request_id: Option<u64>,
    /// The client's time of the request (Unix ms), logged with the exposure
    /// instead of the server's clock: for replayed or simulated traffic whose
    /// events carry the client's timestamps.
    #[serde(default)]
    pub ts_ms: Option<i64>,
}

fn default_k() -> i64 {
    10
}

/// One recommended or similar video.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    /// The video: its id as the model was trained on (a number or a string).
    pub video_id: Id,
    /// The score given by the model that placed it (scores of two
    /// interleaved models are not comparable); `null` (NaN) for a video
    /// exploration drew, which the model did not rank there.
    #[serde(with = "nan_is_null")]
    pub score: f32,
    /// Interleaving: the model (team) that placed this video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Under `serve --explore`: the probability the service had of showing
    /// this video at this position (see `reelkit_ranker::Ranker::explore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propensity: Option<f64>,
}

/// A score of NaN is `null` in JSON, and `null` reads back as NaN.
mod nan_is_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
        if x.is_nan() {
            s.serialize_none()
        } else {
            s.serialize_f32(*x)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
    }
}

/// Response of `/v1/recommend`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecommendResponse {
    /// Best first.
    pub items: Vec<Item>,
    /// The serving model's version; interleaving: `name=version,name=version`.
    pub model_version: String,
    /// Whether the popularity fallback answered (unknown user, no history).
    pub fallback: bool,
    /// A/B test: the user's arm (the model that served them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The request's id (experiments and exposure logging only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u64>,
}

/// The variant a response was served under: labels its metrics.
#[derive(Debug, Clone)]
pub(crate) struct VariantLabel(pub String);

/// Scores one request on `model` through the micro-batcher.
async fn batched(
    state: &AppState,
    user: u64,
    k: usize,
    req: RankRequest,
    model: Arc<Loaded>,
) -> ApiResult<Recommendations> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.batcher.submit(crate::batcher::Job {
        user,
        k,
        req,
        model,
        reply: tx,
    });
    match tokio::time::timeout(state.config.timeout, rx).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "scoring_failed",
            "the scoring task did not finish",
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "scoring took longer than {} ms",
                state.config.timeout.as_millis()
            ),
        )),
    }
}

fn items_of(model: &Loaded, r: &Recommendations) -> Vec<Item> {
    r.items
        .iter()
        .map(|x| Item {
            video_id: Id::video_of(&model.ranker, x.item_id),
            score: x.score,
            team: None,
            propensity: None,
        })
        .collect()
}

/// Team-draft interleaving of two lists; with a creator cap, a video whose
/// creator already has `cap` videos in the merged list is passed over.
fn interleave(
    state: &AppState,
    (name_a, a): (&str, &[Item]),
    (name_b, b): (&str, &[Item]),
    k: usize,
    seed: u64,
    cap: Option<usize>,
) -> Vec<Item> {
    // The two models may number string ids differently: merge on the
    // caller's ids, each interned once.
    let mut interned: HashMap<&Id, u64> = HashMap::new();
    let mut names: Vec<&Id> = Vec::new();
    let mut lists: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for (list, out) in [a, b].into_iter().zip(&mut lists) {
        for x in list {
            let n = *interned.entry(&x.video_id).or_insert_with(|| {
                names.push(&x.video_id);
                names.len() as u64 - 1
            });
            out.push(n);
        }
    }
    let [ia, ib] = lists;
    let mut per_creator: HashMap<u64, usize> = HashMap::new();
    let merged = reelkit_assign::team_draft_by(&ia, &ib, k, seed, |v| match cap {
        None => true,
        // Creator caps need the catalogue, which only numeric-id models take.
        Some(cap) => match names[*v as usize] {
            Id::Text(_) => true,
            Id::Number(n) => match state.creator(*n) {
                None => true,
                Some(c) => {
                    let n = per_creator.entry(c).or_default();
                    *n += 1;
                    *n <= cap
                }
            },
        },
    });
    merged
        .into_iter()
        .map(|(v, team)| {
            let (name, list) = match team {
                Team::A => (name_a, a),
                Team::B => (name_b, b),
            };
            let video_id = names[v as usize].clone();
            let score = list
                .iter()
                .find(|x| x.video_id == video_id)
                .map_or(f32::NAN, |x| x.score);
            Item {
                video_id,
                score,
                team: Some(name.to_string()),
                propensity: None,
            }
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A recommendation request in the caller's ids, before a model reads it.
struct Wanted {
    user: Id,
    exclude: Vec<Id>,
    history: Vec<Id>,
    use_value_model: bool,
    surface: Option<Surface>,
    cap: Option<usize>,
}

impl Wanted {
    /// The request as `model` numbers users and videos. A string-id model's
    /// unknown user gets an id no such model holds (the fallback answers);
    /// videos it does not know are dropped from `exclude` and `history`, as
    /// a numeric model ignores them.
    fn on(&self, model: &Loaded) -> ApiResult<(u64, RankRequest)> {
        let r = &model.ranker;
        let user = self.user.user_in(r).map_err(ApiError::invalid)?;
        let videos = |ids: &[Id]| -> ApiResult<Vec<u64>> {
            let mut out = Vec::with_capacity(ids.len());
            for v in ids {
                out.extend(v.video_in(r).map_err(ApiError::invalid)?);
            }
            Ok(out)
        };
        Ok((
            user.unwrap_or(u64::MAX),
            RankRequest {
                exclude: videos(&self.exclude)?,
                history: videos(&self.history)?,
                use_value_model: self.use_value_model,
                surface: self.surface,
                max_per_creator: self.cap,
            },
        ))
    }
}

async fn recommend(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let b: RecommendBody = json_body(&state, &headers, body).await?;
    let k = check_k(&state, b.k)?;
    check_ids(&state, "exclude", &b.exclude)?;
    check_ids(&state, "history", &b.history)?;
    let surface = match &b.surface {
        None => None,
        Some(s) => Some(
            s.parse::<Surface>()
                .map_err(|e| ApiError::invalid(e.to_string()))?,
        ),
    };
    if b.max_per_creator == Some(0) {
        return Err(ApiError::invalid("max_per_creator must be at least 1"));
    }
    if !state.model().ranker.has_catalog() {
        // A per-surface model answers a surface with the user's vector
        // there; filtering by the surface's formats needs the catalogue.
        if let Some(s) = surface.filter(|s| !state.all_have_surface(Surface::as_str(*s))) {
            return Err(ApiError::invalid(format!(
                "surface `{}` needs the video catalogue (start the server with --videos) or a \
                 per-surface model (reelkit train --per-surface)",
                Surface::as_str(s)
            )));
        }
        if b.max_per_creator.is_some() {
            return Err(ApiError::invalid(
                "creator caps need the video catalogue (start the server with --videos)",
            ));
        }
    }
    let logging = state.exposures().is_some();
    // An exploring service draws from each request's id: it needs one.
    let numbered = logging || state.explore().is_some();
    let request_id = match (b.request_id, state.design(), numbered) {
        (Some(id), _, _) => Some(id),
        (None, Design::Single, false) => None,
        (None, _, _) => Some(state.next_request_id()),
    };
    let cap = b.max_per_creator.map(|c| c as usize);
    let client_ts = b.ts_ms;
    let wanted = Wanted {
        user: b.user_id,
        exclude: b.exclude,
        history: b.history,
        use_value_model: b.use_value_model,
        surface,
        cap,
    };
    let user = wanted.user.hash_key();
    let (response, teams) = match state.design() {
        Design::Single | Design::Ab { .. } => {
            let (i, variant) = match state.design() {
                Design::Ab { split, salt } => {
                    let arm = &split.names()[split.arm(salt, user)];
                    let i = state.slot_index(arm).ok_or_else(|| {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "no_model",
                            format!("arm `{arm}` has no model"),
                        )
                    })?;
                    (i, Some(arm.clone()))
                }
                _ => (0, None),
            };
            let (name, model) = state.slot_model(i);
            let name = name.to_string();
            let (uid, req) = wanted.on(&model)?;
            let explore = state.explore().map(|e| (e, req.clone()));
            let mut r = batched(&state, uid, k, req, model.clone()).await?;
            let propensities = explore.map(|((epsilon, seed), req)| {
                let id = request_id.unwrap_or_default();
                let seed = splitmix64(seed ^ splitmix64(user ^ splitmix64(id)));
                model.ranker.explore(&mut r, &req, epsilon, seed)
            });
            let version = if logging {
                format!("{name}={}", model.version)
            } else {
                String::new()
            };
            let mut items = items_of(&model, &r);
            for (item, &p) in items.iter_mut().zip(propensities.iter().flatten()) {
                item.propensity = Some(p);
            }
            (
                RecommendResponse {
                    items,
                    model_version: model.version.clone(),
                    fallback: r.fallback,
                    variant,
                    request_id,
                },
                (None, version),
            )
        }
        Design::Interleave { salt } => {
            let (name_a, model_a) = state.slot_model(0);
            let (name_b, model_b) = state.slot_model(1);
            let ((ua, qa), (ub, qb)) = (wanted.on(&model_a)?, wanted.on(&model_b)?);
            let (ra, rb) = tokio::try_join!(
                batched(&state, ua, k, qa, model_a.clone()),
                batched(&state, ub, k, qb, model_b.clone())
            )?;
            let id = request_id.unwrap_or_default();
            let seed = reelkit_assign::interleave_seed(salt, user, id);
            let (la, lb) = (items_of(&model_a, &ra), items_of(&model_b, &rb));
            let items = interleave(&state, (name_a, &la), (name_b, &lb), k, seed, cap);
            let teams: Vec<Arc<str>> = {
                let (a, b): (Arc<str>, Arc<str>) = (name_a.into(), name_b.into());
                items
                    .iter()
                    .map(|x| {
                        if x.team.as_deref() == Some(name_a) {
                            a.clone()
                        } else {
                            b.clone()
                        }
                    })
                    .collect()
            };
            let versions = format!("{name_a}={},{name_b}={}", model_a.version, model_b.version);
            (
                RecommendResponse {
                    items,
                    model_version: versions.clone(),
                    fallback: ra.fallback || rb.fallback,
                    variant: None,
                    request_id,
                },
                (Some(teams), versions),
            )
        }
    };
    if let Some(log) = state.exposures() {
        log.log(Exposure {
            user_id: user,
            ts_ms: client_ts.unwrap_or_else(now_ms),
            request_id: request_id.unwrap_or_default(),
            experiment: state.design().kind(),
            variant: response.variant.clone().or_else(|| match state.design() {
                Design::Single => Some(state.slot_model(0).0.to_string()),
                _ => None,
            }),
            surface: surface.map(Surface::as_str),
            // Exposure logs are refused for string-id models (see AppState).
            video_ids: response
                .items
                .iter()
                .map(|x| x.video_id.hash_key())
                .collect(),
            teams: teams.0,
            model_versions: teams.1,
            propensities: response
                .items
                .iter()
                .map(|x| x.propensity)
                .collect::<Option<Vec<f64>>>()
                .filter(|_| state.explore().is_some()),
        });
    }
    let label = match state.design() {
        Design::Single => None,
        Design::Ab { .. } => response.variant.clone(),
        Design::Interleave { .. } => Some("interleave".to_string()),
    };
    let mut out = Json(response).into_response();
    if let Some(l) = label {
        out.extensions_mut().insert(VariantLabel(l));
    }
    Ok(out)
}

/// `POST /v1/score`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreBody {
    /// A user the model knows (else 404).
    pub user_id: Id,
    /// The videos to score, in the order the scores come back.
    pub video_ids: Vec<Id>,
}

/// One score; `null` for a video the model does not know.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VideoScore {
    /// The video asked for.
    pub video_id: Id,
    /// Its score, exactly as a ranking would show it; `null` if unknown.
    pub score: Option<f32>,
}

/// Response of `/v1/score`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreResponse {
    /// One per video asked for, in that order.
    pub scores: Vec<VideoScore>,
    /// The videos the model does not know.
    pub unknown_videos: Vec<Id>,
    /// The serving model's version.
    pub model_version: String,
}

async fn score(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<Json<ScoreResponse>> {
    let b: ScoreBody = json_body(&state, &headers, body).await?;
    check_ids(&state, "video_ids", &b.video_ids)?;
    let model = state.model();
    let user = b
        .user_id
        .user_in(&model.ranker)
        .map_err(ApiError::invalid)?
        .filter(|&u| model.ranker.user_embedding(u).is_some())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_user",
                format!("user {} is not in model {}", b.user_id, model.version),
            )
        })?;
    let videos: Vec<Option<u64>> = b
        .video_ids
        .iter()
        .map(|v| v.video_in(&model.ranker))
        .collect::<Result<_, _>>()
        .map_err(ApiError::invalid)?;
    let response = off_thread(&state, move || -> ApiResult<ScoreResponse> {
        let mut unknown = Vec::new();
        let mut scores = Vec::with_capacity(b.video_ids.len());
        for (asked, v) in b.video_ids.into_iter().zip(videos) {
            // An unknown video scores null; any other error fails the request.
            let score = match v.map(|v| model.ranker.score(user, &[v])) {
                Some(Ok(s)) => s.first().copied(),
                None | Some(Err(reelkit_ranker::Error::UnknownItem(_))) => {
                    unknown.push(asked.clone());
                    None
                }
                Some(Err(e)) => return Err(ApiError::from(&e)),
            };
            scores.push(VideoScore {
                video_id: asked,
                score,
            });
        }
        Ok(ScoreResponse {
            scores,
            unknown_videos: unknown,
            model_version: model.version.clone(),
        })
    })
    .await??;
    Ok(Json(response))
}

/// Response of `/v1/similar/{video_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimilarResponse {
    /// The video the neighbours are of.
    pub video_id: Id,
    /// Its nearest videos by embedding, best first (itself excluded).
    pub items: Vec<Item>,
    /// The serving model's version.
    pub model_version: String,
}

async fn similar(
    State(state): State<Arc<AppState>>,
    Path(video): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<SimilarResponse>> {
    let video_id = Id::parse(&video);
    let k = match q.get("k") {
        None => 10,
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| ApiError::invalid(format!("k must be an integer, got `{s}`")))?,
    };
    let k = check_k(&state, k)?;
    let model = state.model();
    let internal = video_id
        .video_in(&model.ranker)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_video_id", e))?;
    let items = match internal {
        None => None,
        Some(v) => {
            off_thread(&state, {
                let model = model.clone();
                move || model.ranker.similar(v, k)
            })
            .await?
        }
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_video",
            format!("video {video_id} is not in model {}", model.version),
        )
    })?;
    Ok(Json(SimilarResponse {
        video_id,
        items: items
            .into_iter()
            .map(|x| Item {
                video_id: Id::video_of(&model.ranker, x.item_id),
                score: x.score,
                team: None,
                propensity: None,
            })
            .collect(),
        model_version: model.version.clone(),
    }))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let m = state.model();
    let models: serde_json::Map<String, serde_json::Value> = state
        .model_names()
        .iter()
        .filter_map(|n| {
            state
                .model_named(n)
                .map(|m| (n.to_string(), json!(m.version)))
        })
        .collect();
    Json(json!({
        "status": "ready",
        "model_version": m.version,
        "models": models,
        "experiment": state.design().kind(),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&state),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not answer {}", req.uri().path(), req.method()),
    )
}

async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let t = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(req).await;
    let variant = response
        .extensions()
        .get::<VariantLabel>()
        .map(|v| v.0.as_str());
    state.metrics.observe(
        &route,
        response.status().as_u16(),
        variant,
        t.elapsed().as_secs_f64(),
    );
    response
}

/// The service's public routes over `state`; nest or merge it into another
/// axum app. The admin routes are apart ([`admin_router`]): put them on a
/// listener only operators reach.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/recommend", post(recommend))
        .route("/v1/score", post(score))
        .route("/v1/similar/{video_id}", get(similar))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The admin routes (`POST /admin/reload`, `GET /healthz`): refused to
/// browsers, and to callers without the bearer token when
/// [`crate::ServeConfig::admin_token`] is set.
pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/admin/reload", post(reload))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), admin_guard))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

#[cfg(test)]
mod tests;
