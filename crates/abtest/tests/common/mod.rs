//! The committed sample, shared by the integration tests.
// Each test binary uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The sample's events.
pub fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/sample/events.parquet")
}

/// The sample's user ids.
pub fn users() -> Vec<u64> {
    let df = reelkit_logs::read_frame(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/sample/users.parquet"),
    )
    .expect("users.parquet");
    df.column("user_id")
        .expect("user_id")
        .as_materialized_series()
        .u64()
        .expect("u64")
        .iter()
        .flatten()
        .collect()
}

/// The sample split in time, written to `dir`: the first week is the
/// pre-period, the rest the experiment. Returns (pre, post).
pub fn pre_and_post(dir: &Path) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let ev = reelkit_logs::read_events(&sample())?;
    let cut = ev.ts_ms.iter().min().copied().unwrap_or(0) + 7 * 86_400_000;
    let (mut pre, mut post) = (
        reelkit_logs::Events::default(),
        reelkit_logs::Events::default(),
    );
    for i in 0..ev.len() {
        if ev.ts_ms[i] < cut {
            pre.push(&ev.get(i))
        } else {
            post.push(&ev.get(i))
        }
    }
    let (pre_p, post_p) = (dir.join("pre.parquet"), dir.join("post.parquet"));
    reelkit_logs::write_events(&pre_p, &pre)?;
    reelkit_logs::write_events(&post_p, &post)?;
    Ok((pre_p, post_p))
}

/// The analysis inputs of event files (the shape the tests were written in).
pub fn inputs<'a>(
    events: &Path,
    assignments: &'a reelkit_logs::Assignments,
    pre: Option<&Path>,
    metrics: &'a [reelkit_abtest::Metric],
) -> reelkit_abtest::Inputs<'a> {
    let i = reelkit_abtest::Inputs::new(events, assignments, metrics);
    match pre {
        Some(p) => i.with_pre(p),
        None => i,
    }
}
