//! Prometheus metrics: requests by route and status, latency histograms by
//! route, and the served model.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::state::AppState;

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
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

/// Request counters and latency histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *g.requests.entry((route.to_string(), status)).or_default() += 1;
        let h = g.latency.entry(route.to_string()).or_default();
        let b = BUCKETS
            .iter()
            .position(|&ub| seconds <= ub)
            .unwrap_or(BUCKETS.len());
        h.counts[b] += 1;
        h.sum += seconds;
    }

    /// Requests seen for (route, status).
    pub fn count(&self, route: &str, status: u16) -> u64 {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.requests
            .get(&(route.to_string(), status))
            .copied()
            .unwrap_or(0)
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
    let model = state.model();
    {
        let g = state
            .metrics
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.push_str("# HELP reelkit_http_requests_total HTTP requests by route and status.\n");
        s.push_str("# TYPE reelkit_http_requests_total counter\n");
        for ((route, status), n) in &g.requests {
            let _ = writeln!(
                s,
                "reelkit_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
        s.push_str("# HELP reelkit_http_request_duration_seconds Request latency by route.\n");
        s.push_str("# TYPE reelkit_http_request_duration_seconds histogram\n");
        for (route, h) in &g.latency {
            let r = label(route);
            let mut acc = 0;
            for (ub, n) in BUCKETS.iter().zip(&h.counts) {
                acc += n;
                let _ = writeln!(
                    s,
                    "reelkit_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{ub}\"}} {acc}"
                );
            }
            acc += h.counts[BUCKETS.len()];
            let _ = writeln!(
                s,
                "reelkit_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {acc}"
            );
            let _ = writeln!(
                s,
                "reelkit_http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                s,
                "reelkit_http_request_duration_seconds_count{{route=\"{r}\"}} {acc}"
            );
        }
    }
    let m = model.ranker.model();
    let _ = write!(
        s,
        "# HELP reelkit_model_info The model being served.\n# TYPE reelkit_model_info gauge\n\
reelkit_model_info{{version=\"{}\",dim=\"{}\"}} 1\n\
# HELP reelkit_model_loaded_timestamp_seconds When the served model was loaded.\n\
# TYPE reelkit_model_loaded_timestamp_seconds gauge\nreelkit_model_loaded_timestamp_seconds {}\n\
# HELP reelkit_model_load_duration_seconds How long loading the served model took.\n\
# TYPE reelkit_model_load_duration_seconds gauge\nreelkit_model_load_duration_seconds {}\n\
# HELP reelkit_model_reloads_total Successful hot reloads.\n# TYPE reelkit_model_reloads_total counter\n\
reelkit_model_reloads_total {}\n\
# HELP reelkit_model_items Videos in the served model.\n# TYPE reelkit_model_items gauge\nreelkit_model_items {}\n\
# HELP reelkit_model_users Users in the served model.\n# TYPE reelkit_model_users gauge\nreelkit_model_users {}\n",
        label(&model.version),
        m.dim,
        model.loaded_at,
        model.load_seconds,
        state.reloads(),
        m.items.len(),
        m.users.len()
    );
    s
}
