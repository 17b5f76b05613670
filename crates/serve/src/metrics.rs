//! Prometheus metrics: requests by route and status, latency histograms by
//! route, and the served model.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, seconds.
pub const BUCKETS: [f64; 13] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram {
    /// Non-cumulative counts per bucket, then the +Inf overflow.
    pub(crate) counts: [u64; BUCKETS.len() + 1],
    pub(crate) sum: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    /// (route, status, variant; "" outside experiments) → count.
    pub(crate) requests: BTreeMap<(String, u16, String), u64>,
    /// (route, variant) → latency.
    pub(crate) latency: BTreeMap<(String, String), Histogram>,
}

/// Request counters and latency histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) inner: Mutex<Inner>,
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
