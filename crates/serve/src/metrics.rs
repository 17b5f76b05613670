//! Prometheus metrics: requests by route and status, latency histograms by
//! route, and the served model.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::state::{AppState, Loaded};

/// Upper bounds of the latency buckets, seconds.
pub const BUCKETS: [f64; 13] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket, then the +Inf overflow.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    /// (route, status, variant; "" outside experiments) → count.
    requests: BTreeMap<(String, u16, String), u64>,
    /// (route, variant) → latency.
    latency: BTreeMap<(String, String), Histogram>,
}

/// Request counters and latency histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Records one finished request, served under `variant` in an experiment.
    pub fn observe(&self, route: &str, status: u16, variant: Option<&str>, seconds: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let v = variant.unwrap_or("").to_string();
        *g.requests
            .entry((route.to_string(), status, v.clone()))
            .or_default() += 1;
        let h = g.latency.entry((route.to_string(), v)).or_default();
        let b = BUCKETS
            .iter()
            .position(|&ub| seconds <= ub)
            .unwrap_or(BUCKETS.len());
        h.counts[b] += 1;
        h.sum += seconds;
    }

    /// Requests seen for (route, status), all variants together.
    pub fn count(&self, route: &str, status: u16) -> u64 {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.requests
            .iter()
            .filter(|((r, s, _), _)| r == route && *s == status)
            .map(|(_, n)| n)
            .sum()
    }
}

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
