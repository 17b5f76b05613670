//! A candidate's off-policy report as a reader sees it: Markdown and a
//! self-contained HTML page, in the style of the A/B report.

use std::fmt::Write as _;

use serde::Serialize;

use crate::estimate::{Estimate, Report};

/// One metric's estimates of the candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricEstimates {
    /// The metric (a column summed over a user's impressions).
    pub metric: String,
    /// Its estimates and the weights' diagnostics.
    #[serde(flatten)]
    pub report: Report,
}

/// What `reelkit ope` reports: the candidate replayed on the log, and every
/// metric's estimates of its value and of its lift over the logging policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpeReport {
    /// The log read.
    pub log: String,
    /// The candidate's name (its model file).
    pub candidate: String,
    /// The page size the requests were rebuilt with.
    pub page_size: usize,
    /// Requests rebuilt from the log.
    pub pages: usize,
    /// Share of logged impressions whose video the candidate would have
    /// shown at that slot.
    pub agreement: f64,
    /// Interval level of every interval.
    pub level: f64,
    /// Bootstrap resamples of the users.
    pub bootstrap: usize,
    /// What the reader must know about the replay (videos or users the
    /// candidate does not know).
    pub notes: Vec<String>,
    /// One entry per metric.
    pub metrics: Vec<MetricEstimates>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if (1e4..1e15).contains(&a) {
        grouped(x)
    } else if a > 0.0 && a < 1e-3 || a >= 1e15 {
        format!("{x:.3e}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.4}")
    }
}

/// `x` rounded to an integer with its thousands separated: 4,806,310.
fn grouped(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.2}%", 100.0 * x)
    } else {
        "–".into()
    }
}

fn ci(c: [f64; 2], f: fn(f64) -> String) -> String {
    format!("[{}, {}]", f(c[0]), f(c[1]))
}

fn rows(m: &MetricEstimates) -> Vec<[String; 5]> {
    m.report
        .estimates
        .iter()
        .map(|e: &Estimate| {
            [
                e.estimator.as_str().to_uppercase(),
                format!("{} {}", num(e.value), ci(e.value_ci, num)),
                format!("{} {}", num(e.lift), ci(e.lift_ci, num)),
                format!("{} {}", pct(e.rel_lift), ci(e.rel_lift_ci, pct)),
                num(e.se),
            ]
        })
        .collect()
}

const HEAD: [&str; 5] = ["estimator", "value per user", "lift", "relative lift", "SE"];

fn diagnostics_line(m: &MetricEstimates) -> String {
    let d = &m.report.diagnostics;
    format!(
        "{} impressions, {} users; the logging policy earned {} per user. Effective sample \
         size {} ({:.2}% of the impressions); mean weight {} ± {}; largest weight {}, 99th \
         percentile {}; {:.1}% of impressions weigh 0; {:.2}% clipped.",
        d.impressions,
        d.users,
        num(d.logged_value),
        num(d.effective_sample_size),
        100.0 * d.effective_sample_size / d.impressions.max(1) as f64,
        num(d.mean_weight),
        num(d.mean_weight_se),
        num(d.max_weight),
        num(d.p99_weight),
        100.0 * d.zero_weight_share,
        100.0 * d.clipped_share
    )
}

const READING: &str = "Each impression's weight is the candidate's probability of the logged \
video at its slot over the logging policy's. IPS sums weighted rewards; SNIPS divides by the \
weights' sum (steadier, slightly biased); DR adds the cross-fitted reward model's prediction \
of the candidate's choice and weighs only its errors; DM is the reward model alone (biased \
when the model is). Those four hold the log's sessions fixed: what the candidate would change \
in how long a session lasts is not in them. PDIS weighs each reward by the product of its \
session's weights up to it, which sees a session's length too (its variance grows with it). \
What the candidate would change in later visits is in none of them. Intervals are bootstrap \
percentiles over users.";

/// The report as Markdown.
pub fn markdown(r: &OpeReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Off-policy evaluation of {}\n", r.candidate);
    let _ = writeln!(
        s,
        "Log `{}`: {} requests rebuilt (pages of {}); the candidate would have shown the \
         logged video at {:.2}% of the impressions. {:.0}% intervals, {} bootstrap resamples \
         of the users.\n",
        r.log,
        r.pages,
        r.page_size,
        100.0 * r.agreement,
        100.0 * r.level,
        r.bootstrap
    );
    for n in &r.notes {
        let _ = writeln!(s, "> ⚠ {n}\n");
    }
    for m in &r.metrics {
        let _ = writeln!(s, "## {}\n", m.metric);
        let _ = writeln!(s, "| {} |", HEAD.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(HEAD.len()));
        for row in rows(m) {
            let _ = writeln!(s, "| {} |", row.join(" | "));
        }
        let _ = writeln!(s, "\n{}\n", diagnostics_line(m));
        for w in &m.report.diagnostics.warnings {
            let _ = writeln!(s, "> ⚠ {w}\n");
        }
    }
    let _ = writeln!(s, "{READING}");
    s
}

/// Each estimator's relative lift and its interval, as an inline SVG.
fn lift_svg(m: &MetricEstimates) -> String {
    let est = &m.report.estimates;
    let finite = |x: f64| x.is_finite().then_some(x);
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for e in est {
        for x in [e.rel_lift, e.rel_lift_ci[0], e.rel_lift_ci[1]]
            .into_iter()
            .filter_map(finite)
        {
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let (lo, hi) = (lo - pad, hi + pad);
    let (left, width, row) = (70.0, 520.0, 26.0);
    let x = |v: f64| left + (v - lo) / (hi - lo) * width;
    let height = row * est.len() as f64 + 30.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         font-size=\"12\"><line x1=\"{z}\" x2=\"{z}\" y1=\"0\" y2=\"{b}\" stroke=\"#999\" \
         stroke-dasharray=\"3,3\"/>",
        w = left + width + 20.0,
        z = x(0.0),
        b = height - 20.0
    );
    for (k, e) in est.iter().enumerate() {
        let y = row * k as f64 + 15.0;
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{ty}\">{name}</text>",
            ty = y + 4.0,
            name = e.estimator.as_str().to_uppercase()
        );
        if let (Some(a), Some(b)) = (finite(e.rel_lift_ci[0]), finite(e.rel_lift_ci[1])) {
            let _ = write!(
                s,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#0969da\" \
                 stroke-width=\"2\"/>",
                x(a),
                x(b)
            );
        }
        if let Some(v) = finite(e.rel_lift) {
            let _ = write!(
                s,
                "<circle cx=\"{}\" cy=\"{y}\" r=\"4\" fill=\"#0969da\"><title>{}</title></circle>",
                x(v),
                pct(v)
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{ty}\" text-anchor=\"start\">{}</text><text x=\"{}\" y=\"{ty}\" \
         text-anchor=\"end\">{}</text></svg>",
        left,
        pct(lo),
        left + width,
        pct(hi),
        ty = height - 4.0
    );
    s
}

/// The report as a self-contained HTML page.
pub fn html(r: &OpeReport) -> String {
    let mut body = String::new();
    for n in &r.notes {
        let _ = write!(
            body,
            "<p class=\"warnbox\">⚠ {}</p>",
            esc(&n.replace('`', ""))
        );
    }
    for m in &r.metrics {
        let _ = write!(
            body,
            "<h2>{}</h2><p>Relative lift over the logging policy, {:.0}% intervals:</p>{}<table><tr>",
            esc(&m.metric),
            100.0 * r.level,
            lift_svg(m)
        );
        for h in HEAD {
            let _ = write!(body, "<th>{h}</th>");
        }
        body.push_str("</tr>");
        for row in rows(m) {
            body.push_str("<tr>");
            for c in row {
                let _ = write!(body, "<td>{}</td>", esc(&c));
            }
            body.push_str("</tr>");
        }
        let _ = write!(body, "</table><p>{}</p>", esc(&diagnostics_line(m)));
        for w in &m.report.diagnostics.warnings {
            let _ = write!(
                body,
                "<p class=\"warnbox\">⚠ {}</p>",
                esc(&w.replace('`', ""))
            );
        }
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>OPE {cand}</title><style>\
body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;font-size:13px}}\
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}\
.warnbox{{background:#fff8c5;padding:6px 10px}}.legend{{color:#57606a;font-size:13px}}</style></head><body>\
<h1>Off-policy evaluation of {cand}</h1><p>Log <code>{log}</code>: {pages} requests rebuilt (pages of {page}); \
the candidate would have shown the logged video at {agree:.2}% of the impressions; {boot} bootstrap resamples of the users.</p>\
{body}<p class=\"legend\">{reading}</p></body></html>\n",
        cand = esc(&r.candidate),
        log = esc(&r.log),
        pages = r.pages,
        page = r.page_size,
        agree = 100.0 * r.agreement,
        boot = r.bootstrap,
        reading = esc(READING),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_a_person_writes_them() {
        assert_eq!(num(4_806_310.4), "4,806,310");
        assert_eq!(num(-31_150.4), "-31,150");
        assert_eq!(num(999.96), "1000.0");
        assert_eq!(num(14.8543), "14.8543");
        assert_eq!(num(0.0002), "2.000e-4");
        assert_eq!(num(f64::NAN), "–");
        assert_eq!(pct(0.1482), "+14.82%");
    }
}
