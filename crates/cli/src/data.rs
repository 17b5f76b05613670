//! Loading training and evaluation data for the ranker commands: reelkit event
//! logs (engagement-weighted) or generic interactions (mappable columns).

use std::path::{Path, PathBuf};

use anyhow::Context;
use reelkit_logs::{
    read_events, read_interactions, schema, Events, InteractionColumns, TextOptions,
};
use reelkit_ranker::EngagementWeights;

/// Column flags shared by every command that reads interactions.
#[derive(Debug, Clone, clap::Args)]
pub struct ColumnArgs {
    /// User id column of interaction files.
    #[arg(long, default_value = "user_id")]
    pub user_col: String,
    /// Item id column of interaction files.
    #[arg(long, default_value = "item_id")]
    pub item_col: String,
    /// Optional weight column (rating, play count); absent: every row weighs 1.
    #[arg(long)]
    pub weight_col: Option<String>,
    /// Optional timestamp column.
    #[arg(long)]
    pub ts_col: Option<String>,
    /// CSV/TSV files without a header row (columns are then column_1, column_2, ...).
    #[arg(long)]
    pub no_header: bool,
    /// Field separator of text files (default: `,` for .csv, tab for .tsv).
    #[arg(long)]
    pub separator: Option<char>,
}

impl ColumnArgs {
    pub fn columns(&self) -> anyhow::Result<InteractionColumns> {
        let separator = match self.separator {
            Some(c) if c.is_ascii() => Some(c as u8),
            Some(c) => anyhow::bail!("--separator must be one ASCII character, got {c:?}"),
            None => None,
        };
        Ok(InteractionColumns {
            user: self.user_col.clone(),
            item: self.item_col.clone(),
            weight: self.weight_col.clone(),
            ts: self.ts_col.clone(),
            text: TextOptions {
                separator,
                has_header: !self.no_header,
            },
        })
    }
}

/// The training source: exactly one of `--events` or `--interactions`.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct SourceArgs {
    /// A reelkit event log (one row per impression): weights blend watch time and engagement.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Generic interactions `user_id, item_id, [weight], [ts]` (see the column flags).
    #[arg(long)]
    pub interactions: Option<PathBuf>,
}

impl SourceArgs {
    /// The source's flag and file.
    pub fn input(&self) -> (&'static str, &Path) {
        match (&self.events, &self.interactions) {
            (Some(p), _) => ("--events", p),
            (None, Some(p)) => ("--interactions", p),
            (None, None) => ("--events", Path::new("")),
        }
    }
}

/// Refuses an output that is one of the command's inputs (the same file, by
/// device and inode, whatever the path's spelling): it would be replaced by
/// the output, and an event log or model lost, with exit 0.
pub fn refuse_overwrite(
    out_flag: &str,
    out: &Path,
    inputs: &[(&str, Option<&Path>)],
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(o) = std::fs::metadata(out) else {
        return Ok(());
    };
    for (flag, input) in inputs {
        let Some(input) = input else { continue };
        if let Ok(i) = std::fs::metadata(input) {
            anyhow::ensure!(
                (i.dev(), i.ino()) != (o.dev(), o.ino()),
                "{out_flag} {} is the same file as {flag} {}: refusing to overwrite an input",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Weighted user–item triplets with optional timestamps.
#[derive(Debug, Clone, Default)]
pub struct Triplets {
    pub user_id: Vec<u64>,
    pub item_id: Vec<u64>,
    pub weight: Vec<f32>,
    pub ts: Option<Vec<i64>>,
    /// A pair is a positive when its summed weight is above this.
    pub min_weight: f32,
}

use reelkit_lab::event_weights;

pub fn from_events(ev: &Events) -> anyhow::Result<Triplets> {
    let w = EngagementWeights::default();
    Ok(Triplets {
        weight: event_weights(ev, &w),
        min_weight: w.min_positive,
        user_id: ev.user_id.clone(),
        item_id: ev.video_id.clone(),
        ts: Some(ev.ts_ms.clone()),
    })
}

/// Whether a file holds a reelkit event log (it has the `watch_ms` and
/// `duration_ms` columns), judged from its header/schema.
pub fn looks_like_events(path: &Path, cols: &ColumnArgs) -> anyhow::Result<bool> {
    let df = reelkit_logs::read_frame_with(path, &cols.columns()?.text)
        .with_context(|| format!("reading {}", path.display()))?;
    let names = df.get_column_names_owned();
    Ok([schema::WATCH_MS, schema::DURATION_MS, schema::VIDEO_ID]
        .iter()
        .all(|c| names.iter().any(|n| n.as_str() == *c)))
}

/// Reads a file as events when it looks like an event log, else as interactions.
pub fn load_any(path: &Path, cols: &ColumnArgs) -> anyhow::Result<(Triplets, Option<Events>)> {
    if looks_like_events(path, cols)? {
        let ev = read_events(path).context("reading events")?;
        Ok((from_events(&ev)?, Some(ev)))
    } else {
        Ok((load_interactions(path, cols)?, None))
    }
}

pub fn load_interactions(path: &Path, cols: &ColumnArgs) -> anyhow::Result<Triplets> {
    let it = read_interactions(path, &cols.columns()?).context("reading interactions")?;
    let n = it.len();
    Ok(Triplets {
        user_id: it.user_id,
        item_id: it.item_id,
        weight: it.weight.unwrap_or_else(|| vec![1.0; n]),
        ts: it.ts,
        min_weight: 0.0,
    })
}

/// Loads the training source.
pub fn load_source(
    src: &SourceArgs,
    cols: &ColumnArgs,
) -> anyhow::Result<(Triplets, Option<Events>)> {
    match (&src.events, &src.interactions) {
        (Some(p), None) => {
            let ev = read_events(p).context("reading events")?;
            Ok((from_events(&ev)?, Some(ev)))
        }
        (None, Some(p)) => Ok((load_interactions(p, cols)?, None)),
        _ => anyhow::bail!("give exactly one of --events or --interactions"),
    }
}
