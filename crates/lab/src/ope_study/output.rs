//! An off-policy study's files: `ope_study.json`, `ope_study.md`,
//! `ope_study.svg` (each estimate's error against its truth), `ope_study.html`
//! and `trials.csv`, written all or nothing.

use std::fmt::Write as _;
use std::path::Path;

use reelkit_logs::files::FileSet;

use super::{OpeRates, OpeStudy};
use crate::error::{Error, Result};
use crate::output::pretty_json;

fn pct(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

fn share(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Mean, lowest and highest of `v`.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len().max(1) as f64;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (v.iter().sum::<f64>() / n, lo, hi)
}

/// The rates table's header and rows.
fn rate_rows(s: &OpeStudy) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let head = vec![
        "estimator",
        "candidate",
        "true lift (mean)",
        "estimate (mean)",
        "bias ± SE",
        "RMSE",
        "coverage",
        "half-width",
        "|bias| / half-width",
    ];
    let row = |r: &OpeRates| {
        vec![
            r.estimator.clone(),
            r.candidate.clone(),
            pct(r.mean_truth),
            pct(r.mean_estimate),
            format!("{} ± {:.2}", pct(r.bias), 100.0 * r.bias_se),
            format!("{:.2} pts", 100.0 * r.rmse),
            share(r.coverage),
            format!("{:.2} pts", 100.0 * r.mean_half_width),
            format!(
                "{:.2}",
                r.bias.abs() / r.mean_half_width.max(f64::MIN_POSITIVE)
            ),
        ]
    };
    (head, s.rates.iter().map(row).collect())
}

/// The ordering table's header and rows.
fn order_rows(s: &OpeStudy) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let head = vec!["estimator", "runs in true order", "meets the bar"];
    let rows = s
        .ordering
        .iter()
        .map(|o| {
            vec![
                o.estimator.clone(),
                format!(
                    "{} of {} ({})",
                    o.runs_in_true_order,
                    s.runs,
                    share(o.share)
                ),
                (if o.meets_bar { "yes" } else { "no" }).to_string(),
            ]
        })
        .collect();
    (head, rows)
}

/// Appends a Markdown table.
fn push_markdown_table(out: &mut String, head: &[&str], rows: Vec<Vec<String>>) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(head.len()));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
}

/// An HTML table, every cell escaped.
fn html_table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = String::from("<table><tr>");
    for h in head {
        let _ = write!(table, "<th>{}</th>", esc(h));
    }
    table.push_str("</tr>\n");
    for r in rows {
        table.push_str("<tr>");
        for cell in r {
            let _ = write!(table, "<td>{}</td>", esc(&cell));
        }
        table.push_str("</tr>\n");
    }
    table.push_str("</table>");
    table
}

/// `ope_study.md`: the design, the logging policy's cost, the bar and the
/// tables.
pub fn ope_study_markdown(s: &OpeStudy) -> String {
    let mut out = format!("# Off-policy estimates against the truth: {}\n\n", s.name);
    let (cost, lo, hi) = spread(&s.logging_cost);
    let _ = writeln!(
        out,
        "{runs} runs; {users} users, {pre} pre-period days, a log of {days} days \
         ({imp:.0} impressions a run), taste divergence {div}. Logging policy: `{logger}` \
         with {explore} of its pages given to a candidate drawn uniformly from {cands}. \
         **Exploring costs {cost} watch time per user** against `{logger}` alone \
         (runs from {lo} to {hi}).\n",
        runs = s.runs,
        users = s.users,
        pre = s.pre_days,
        days = s.days,
        imp = s.impressions,
        div = s.surface_taste_divergence,
        logger = s.logger,
        explore = share(s.explore),
        cands = s
            .candidates
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
        cost = pct(cost),
        lo = pct(lo),
        hi = pct(hi),
    );
    out.push_str(
        "The bar: coverage ≥ 90% on every candidate, |bias| ≤ a third of the mean interval \
         half-width, and the candidates in their true order in ≥ 90% of runs.\n\n",
    );
    let (head, rows) = order_rows(s);
    push_markdown_table(&mut out, &head, rows);
    out.push('\n');
    let (head, rows) = rate_rows(s);
    push_markdown_table(&mut out, &head, rows);
    let _ = writeln!(out, "\n{}", s.definition);
    out
}

/// Each estimate's error (estimate − truth) per estimator and candidate,
/// with the mean interval half-width as a band around 0.
fn errors_svg(s: &OpeStudy) -> String {
    let rows: Vec<&OpeRates> = s.rates.iter().filter(|r| r.candidate != "all").collect();
    // The axis spans the errors of most runs and the half-widths of most
    // estimators (the 95th percentile of each): estimators far worse run off
    // it (drawn at the edge in red).
    let p95 = |mut v: Vec<f64>| {
        v.retain(|x| x.is_finite());
        v.sort_by(f64::total_cmp);
        v.get((v.len() * 95 / 100).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.01)
    };
    let errors = p95(s
        .trials
        .iter()
        .map(|t| (t.estimate - t.truth).abs())
        .collect());
    let widths = p95(rows.iter().map(|r| r.mean_half_width).collect());
    let range = (1.1 * errors.max(widths)).max(1e-4);
    let row_h = 24.0;
    let (w, left, right) = (760.0, 170.0, 20.0);
    let h = 46.0 + row_h * rows.len() as f64;
    let x = |v: f64| left + ((v / range).clamp(-1.0, 1.0) + 1.0) / 2.0 * (w - left - right);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"11\"><text x=\"{left}\" y=\"12\">estimate − \
         truth per run (relative lift); grey: ± mean interval half-width</text>"
    );
    for t in [-1.0, -0.5, 0.0, 0.5, 1.0] {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"18\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"{2}\"/>\
             <text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\" fill=\"#666\">{4}</text>",
            x(t * range),
            h - 16.0,
            if t == 0.0 { "#000" } else { "#eee" },
            h - 4.0,
            pct(t * range)
        );
    }
    for (k, r) in rows.iter().enumerate() {
        let y = 24.0 + row_h * k as f64;
        let hw = r.mean_half_width.min(range);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} · {}</text>\
             <rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"14\" fill=\"#d0d7de\"/>",
            left - 8.0,
            y + 11.0,
            esc(&r.estimator),
            esc(&r.candidate),
            x(-hw),
            x(hw) - x(-hw),
        );
        for t in s
            .trials
            .iter()
            .filter(|t| t.estimator == r.estimator && t.candidate == r.candidate)
        {
            let err = t.estimate - t.truth;
            let off = err.abs() > range || !err.is_finite();
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{}\" fill-opacity=\"0.5\"/>",
                x(if err.is_finite() { err } else { range }),
                y + 7.0,
                if off { "#cf222e" } else { "#0969da" }
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Writes the study's files into `dir`, all or nothing.
pub fn write_ope_study(dir: &Path, s: &OpeStudy) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = pretty_json("ope study", s)?;
    let md = ope_study_markdown(s);
    let svg = errors_svg(s);
    let (head, rows) = rate_rows(s);
    let table = html_table(&head, rows);
    let (head, rows) = order_rows(s);
    let order = html_table(&head, rows);
    let (cost, _, _) = spread(&s.logging_cost);
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Off-policy study of {name}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right}}td:nth-child(-n+2){{text-align:left}}</style>\
         </head><body><h1>Off-policy estimates against the truth: {name}</h1>\
         <p>{runs} runs; logging policy <b>{logger}</b> with {explore} of its pages given to a \
         candidate; exploring costs <b>{cost}</b> watch time per user.</p>{order}<h2>Errors</h2>{svg}\
         <h2>Rates</h2>{table}<p>{definition}</p></body></html>\n",
        name = esc(&s.name),
        runs = s.runs,
        logger = esc(&s.logger),
        explore = share(s.explore),
        cost = pct(cost),
        definition = esc(&s.definition),
    );
    let mut csv = String::from("run,candidate,estimator,estimate,ci_low,ci_high,truth,ess_share\n");
    for t in &s.trials {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            t.run, t.candidate, t.estimator, t.estimate, t.ci[0], t.ci[1], t.truth, t.ess_share
        );
    }
    let mut set = FileSet::new();
    for (name, bytes) in [
        ("ope_study.json", json),
        ("ope_study.md", md.into_bytes()),
        ("ope_study.svg", svg.into_bytes()),
        ("ope_study.html", html.into_bytes()),
        ("trials.csv", csv.into_bytes()),
    ] {
        set.write_bytes(&dir.join(name), &bytes)?;
    }
    set.commit()?;
    Ok(())
}
