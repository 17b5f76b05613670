//! The Prometheus text exposition of a service (`GET /metrics`): the request
//! counters and latency histograms of [`crate::Metrics`] plus what the state
//! knows (models, versions, exposure log). Apart from `metrics.rs` so that the
//! counters the state holds do not need the state.

use crate::metrics::BUCKETS;
use crate::state::{AppState, Loaded};
use std::fmt::Write as _;

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of everything.
pub fn render(state: &AppState) -> String {
    let mut s = String::new();
    {
        let g = state
            .metrics
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.push_str("# HELP reelkit_http_requests_total HTTP requests by route and status.\n");
        s.push_str("# TYPE reelkit_http_requests_total counter\n");
        for ((route, status, variant), n) in &g.requests {
            let _ = writeln!(
                s,
                "reelkit_http_requests_total{{route=\"{}\",status=\"{status}\"{}}} {n}",
                label(route),
                variant_label(variant)
            );
        }
        s.push_str("# HELP reelkit_http_request_duration_seconds Request latency by route.\n");
        s.push_str("# TYPE reelkit_http_request_duration_seconds histogram\n");
        for ((route, variant), h) in &g.latency {
            let r = format!("route=\"{}\"{}", label(route), variant_label(variant));
            let mut acc = 0;
            for (ub, n) in BUCKETS.iter().zip(&h.counts) {
                acc += n;
                let _ = writeln!(
                    s,
                    "reelkit_http_request_duration_seconds_bucket{{{r},le=\"{ub}\"}} {acc}"
                );
            }
            acc += h.counts[BUCKETS.len()];
            let _ = writeln!(
                s,
                "reelkit_http_request_duration_seconds_bucket{{{r},le=\"+Inf\"}} {acc}"
            );
            let _ = writeln!(
                s,
                "reelkit_http_request_duration_seconds_sum{{{r}}} {}",
                h.sum
            );
            let _ = writeln!(
                s,
                "reelkit_http_request_duration_seconds_count{{{r}}} {acc}"
            );
        }
    }
    s.push_str(
        "# HELP reelkit_model_info The models being served.\n# TYPE reelkit_model_info gauge\n",
    );
    let models = state.models();
    for (name, m, _) in &models {
        let _ = writeln!(
            s,
            "reelkit_model_info{{model=\"{}\",version=\"{}\",dim=\"{}\"}} 1",
            label(name),
            label(&m.version),
            m.ranker.model().dim
        );
    }
    type Gauge = (
        &'static str,
        &'static str,
        &'static str,
        fn(&Loaded, u64) -> f64,
    );
    let per_model: [Gauge; 5] = [
        (
            "reelkit_model_loaded_timestamp_seconds",
            "gauge",
            "When the model was loaded.",
            |m, _| m.loaded_at,
        ),
        (
            "reelkit_model_load_duration_seconds",
            "gauge",
            "How long loading the model took.",
            |m, _| m.load_seconds,
        ),
        (
            "reelkit_model_reloads_total",
            "counter",
            "Successful hot reloads.",
            |_, r| r as f64,
        ),
        (
            "reelkit_model_items",
            "gauge",
            "Videos in the model.",
            |m, _| m.ranker.model().items.len() as f64,
        ),
        (
            "reelkit_model_users",
            "gauge",
            "Users in the model.",
            |m, _| m.ranker.model().users.len() as f64,
        ),
    ];
    for (metric, kind, help, value) in per_model {
        let _ = writeln!(s, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        for (name, m, reloads) in &models {
            let _ = writeln!(
                s,
                "{metric}{{model=\"{}\"}} {}",
                label(name),
                value(m, *reloads)
            );
        }
    }
    s.push_str(&format!(
        "# HELP reelkit_connections_refused_total Connections answered 503 and closed at the connection cap.\n\
         # TYPE reelkit_connections_refused_total counter\n\
         reelkit_connections_refused_total {}\n",
        state
            .connections_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    ));
    if let Some(log) = state.exposures() {
        let counters: [(&str, &str, u64); 4] = [
            (
                "reelkit_exposures_logged_total",
                "Responses written to the exposure log.",
                log.logged(),
            ),
            (
                "reelkit_exposures_dropped_total",
                "Responses the exposure log had to drop (queue full or write errors).",
                log.dropped(),
            ),
            (
                "reelkit_exposure_errors_total",
                "Exposure file write or close errors.",
                log.errors(),
            ),
            (
                "reelkit_exposure_files_total",
                "Exposure files closed.",
                log.files(),
            ),
        ];
        for (metric, help, n) in counters {
            let _ = writeln!(
                s,
                "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {n}"
            );
        }
    }
    s
}

/// `,variant="…"` for requests served in an experiment, else nothing.
fn variant_label(v: &str) -> String {
    if v.is_empty() {
        String::new()
    } else {
        format!(",variant=\"{}\"", label(v))
    }
}
