//! Writing an experiment's results: reports, truth, summary, data — all or
//! nothing.

use std::fmt::Write as _;
use std::path::Path;

use reelkit_abtest::{
    markdown,
    reporting::{forest_svg_with_truth, html_with_truth, TrueLift},
};
use reelkit_logs::files::FileSet;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::run::{Estimate, Outcome, Summary};
use crate::truth::ALL;

/// Pretty JSON with a final newline.
pub(crate) fn pretty_json<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(v).map_err(|e| Error::Parse {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    out.push(b'\n');
    Ok(out)
}

fn pct(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

/// The metric a summary leads with: watch time per user when analysed.
fn lead_metric(s: &Summary) -> Option<&str> {
    s.estimates
        .iter()
        .find(|e| e.metric == "watch_time_per_user")
        .or_else(|| s.estimates.first())
        .map(|e| e.metric.as_str())
}

fn row(out: &mut String, e: &Estimate, first: &str) {
    let width = match e.abs_ci_width_without_cuped {
        Some(w) if w > 0.0 => format!("{:.2}", (e.abs_ci_high - e.abs_ci_low) / w),
        _ => "-".into(),
    };
    let _ = writeln!(
        out,
        "| {first} | {} | [{}, {}] | {} | {} | {} | {} |",
        pct(e.estimate_rel),
        pct(e.rel_ci_low),
        pct(e.rel_ci_high),
        pct(e.true_rel),
        if e.covered { "yes" } else { "**no**" },
        if e.significant { "yes" } else { "no" },
        width
    );
}

/// One sentence per hierarchical unified arm: which parts of a user's taste
/// its last fit found shared across surfaces and which each surface's own.
pub(crate) fn taste_sentences(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    let mut arms: Vec<&str> = Vec::new();
    for r in &s.refreshes {
        if r.specific.is_some() && !arms.contains(&r.arm.as_str()) {
            arms.push(&r.arm);
        }
    }
    for arm in arms {
        let Some((day, specific, items)) = s
            .refreshes
            .iter()
            .rev()
            .filter(|r| r.arm == arm)
            .find_map(|r| {
                r.specific
                    .as_ref()
                    .map(|x| (r.day, x, r.item_specific.as_ref()))
            })
        else {
            continue;
        };
        let users = grouped(
            specific,
            [
                "{} shared with their other surfaces",
                "{} partly its own",
                "{} its own",
            ],
        );
        let videos = match items {
            Some(psi) if psi.iter().any(|&x| x > 0.0) => format!(
                "; a video's vector {} (its video share ψ in brackets)",
                grouped(
                    psi,
                    [
                        "the same on {}",
                        "partly the surface's own on {}",
                        "the surface's own on {}",
                    ],
                )
            ),
            Some(_) => "; a video's vector the same on every surface".to_string(),
            None => String::new(),
        };
        out.push(format!(
            "**What `{arm}` found shared**: for day {day}'s fit it judged a user's taste on \
             {users}{videos} (each surface's specific share φ in brackets: 0 is one taste \
             everywhere, 1 a taste of the surface's own; chosen on the control's impressions of \
             the last days, each day scored by a model that had not trained on it)."
        ));
    }
    out
}

/// Surfaces grouped by share (≤ 0.1, below 0.75, above), each group's
/// names put in its template at `{}`: `reels (0) and feed (0) shared and
/// watch (1) its own`.
fn grouped(shares: &[f32], words: [&str; 3]) -> String {
    let mut groups: [Vec<String>; 3] = Default::default();
    for (surface, &x) in reelkit_logs::Surface::ALL.iter().zip(shares) {
        let k = if x <= 0.1 {
            0
        } else if x < 0.75 {
            1
        } else {
            2
        };
        groups[k].push(format!("{surface} ({x})"));
    }
    let parts: Vec<String> = groups
        .iter()
        .zip(words)
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, w)| w.replace("{}", &join_and(g)))
        .collect();
    join_and(&parts)
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The Markdown summary: the answer first, then every estimate beside its truth.
pub fn summary_markdown(s: &Summary) -> String {
    let mut out = String::new();
    let arms: Vec<String> = s
        .arms
        .iter()
        .map(|a| {
            format!(
                "`{}` ({}{}, {} users)",
                a.name,
                a.recipe.name(),
                if a.name == s.control { ", control" } else { "" },
                a.users
            )
        })
        .collect();
    let _ = writeln!(out, "# Experiment `{}`\n", s.name);
    let _ = writeln!(
        out,
        "{} users; {}-day pre-period on `{}`, then a {}-day experiment with arms {}; surface taste divergence {}, seed {}. \
         Every estimate is set beside the simulation's ground truth (each user played under every arm).\n",
        s.users,
        s.pre_days,
        s.pre_policy,
        s.days,
        arms.join(", "),
        s.surface_taste_divergence,
        s.seed
    );
    let Some(lead) = lead_metric(s) else {
        return out;
    };
    // The answer: the named comparisons (or every one) on the lead metric,
    // overall and per surface.
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for e in &s.estimates {
        if !pairs.contains(&(e.variant.as_str(), e.baseline.as_str())) {
            pairs.push((&e.variant, &e.baseline));
        }
    }
    let named: Vec<(&str, &str)> = pairs.iter().copied().filter(|p| p.1 != s.control).collect();
    let answer = if named.is_empty() { &pairs } else { &named };
    let _ = writeln!(out, "## The answer: `{lead}`\n");
    for &(v, b) in answer {
        let rows: Vec<&Estimate> = s
            .estimates
            .iter()
            .filter(|e| e.variant == v && e.baseline == b && e.metric == lead)
            .collect();
        if let Some(all) = rows.iter().find(|e| e.segment == ALL) {
            let excludes_zero = all.rel_ci_low > 0.0 || all.rel_ci_high < 0.0;
            let verdict = match (all.significant, all.estimate_rel > 0.0) {
                (true, true) => format!("`{v}` beats `{b}`"),
                (true, false) => format!("`{v}` loses to `{b}`"),
                // The interval is per comparison; significance is after the
                // correction over every metric and comparison: say so.
                _ if excludes_zero => format!(
                    "`{v}` {} `{b}` by its own 95% interval, but not significantly once \
                     corrected for the {} tests of this report (adjusted p = {:.3})",
                    if all.estimate_rel > 0.0 {
                        "is ahead of"
                    } else {
                        "is behind"
                    },
                    s.estimates.iter().filter(|e| e.segment == ALL).count(),
                    all.p_value_adjusted
                ),
                _ => format!("no significant difference between `{v}` and `{b}`"),
            };
            let _ = writeln!(
                out,
                "**{v} vs {b}**: {verdict} on {lead}: estimated {} [{}, {}], true {} ({}).\n",
                pct(all.estimate_rel),
                pct(all.rel_ci_low),
                pct(all.rel_ci_high),
                pct(all.true_rel),
                if all.covered {
                    "the truth is inside the interval"
                } else {
                    "the truth is OUTSIDE the interval"
                }
            );
        }
        let _ = writeln!(
            out,
            "| segment | estimated lift | CI | true lift | truth in CI | significant | CUPED CI width vs plain |"
        );
        let _ = writeln!(out, "|---|---:|---|---:|:-:|:-:|---:|");
        for e in rows {
            row(&mut out, e, &e.segment);
        }
        out.push('\n');
    }
    for line in taste_sentences(s) {
        let _ = writeln!(out, "{line}\n");
    }
    let _ = writeln!(out, "## Every comparison\n");
    for &(v, b) in &pairs {
        let _ = writeln!(out, "### `{v}` vs `{b}`\n");
        let _ = writeln!(
            out,
            "| metric | estimated lift | CI | true lift | truth in CI | significant | CUPED CI width vs plain |"
        );
        let _ = writeln!(out, "|---|---:|---|---:|:-:|:-:|---:|");
        for e in s
            .estimates
            .iter()
            .filter(|e| e.variant == v && e.baseline == b && e.segment == ALL)
        {
            row(&mut out, e, &e.metric);
        }
        out.push('\n');
    }
    if !s.refreshes.is_empty() {
        let fits = s.refreshes.len();
        let _ = writeln!(
            out,
            "Trained arms were fitted {fits} times (sizes in summary.json, times in timings.json).",
        );
    }
    out
}

impl Outcome {
    /// Writes everything into `dir` (created if needed), all or nothing:
    /// `report.{json,md,html}` and `forest.svg` (with the true lifts marked),
    /// `ground_truth.json`, `summary.{json,md}`, `timings.json`, `spec.toml`
    /// and `data/{pre_events,events,assignments}.parquet`.
    pub fn write(&self, dir: &Path, spec_toml: &str) -> Result<()> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|source| Error::Io {
            path: data.clone(),
            source,
        })?;
        let lifts: Vec<TrueLift> = self
            .truth
            .effects
            .iter()
            .filter(|e| e.segment == ALL)
            .map(|e| TrueLift {
                metric: e.metric.clone(),
                variant: e.variant.clone(),
                control: e.baseline.clone(),
                rel_effect: e.rel_effect,
            })
            .collect();
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("report.json", pretty_json("report", &self.report)?),
            ("report.md", markdown(&self.report).into_bytes()),
            (
                "report.html",
                html_with_truth(&self.report, &lifts).into_bytes(),
            ),
            (
                "forest.svg",
                forest_svg_with_truth(&self.report, &lifts).into_bytes(),
            ),
            (
                "ground_truth.json",
                pretty_json("ground truth", &self.truth)?,
            ),
            ("summary.json", pretty_json("summary", &self.summary)?),
            ("summary.md", summary_markdown(&self.summary).into_bytes()),
            ("timings.json", pretty_json("timings", &self.timings)?),
            ("spec.toml", spec_toml.as_bytes().to_vec()),
        ];
        let mut set = FileSet::new();
        for (name, bytes) in &files {
            set.write_bytes(&dir.join(name), bytes)?;
        }
        set.write_frame(
            &data.join("pre_events.parquet"),
            &mut self.pre_events.to_dataframe()?,
        )?;
        set.write_frame(
            &data.join("events.parquet"),
            &mut self.events.to_dataframe()?,
        )?;
        set.write_frame(
            &data.join("assignments.parquet"),
            &mut self.assignments.to_dataframe()?,
        )?;
        set.commit()?;
        Ok(())
    }
}
