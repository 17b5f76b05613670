//! Loading training and evaluation data for the ranker commands: reelkit event
//! logs (engagement-weighted) or generic interactions (mappable columns).

use std::path::{Path, PathBuf};

use anyhow::Context;
use reelkit_logs::{files::TextOptions, read_events, schema, Events, InteractionColumns, Layout};

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
    /// Text files without a header row (columns are then column_1, column_2, ...).
    #[arg(long)]
    pub no_header: bool,
    /// Field separator of text files, one or more characters (`\t` or `tab`
    /// for a tab, `::` for MovieLens' .dat); default `,` for .csv, tab for
    /// .tsv, else sniffed from the first line (tab, `::`, `,`, `;`, `|`).
    /// `\r` line ends, quoted ids and a `//` or `#` header line are read as
    /// they come.
    #[arg(long, visible_alias = "separator", value_parser = parse_sep)]
    pub sep: Option<String>,
    /// Skip rows with too few fields or an unclosed quote (counted in a
    /// warning) instead of stopping at the first. Rows with an empty user or
    /// item id are always skipped with a warning.
    #[arg(long)]
    pub skip_bad_rows: bool,
}

/// A value for a message, cut to 80 characters.
pub fn cut(v: &str) -> String {
    match v.char_indices().nth(80) {
        Some((at, _)) => format!("{}… ({} characters)", &v[..at], v.chars().count()),
        None => v.to_string(),
    }
}

fn parse_sep(text: &str) -> Result<String, String> {
    let s = match text {
        "\\t" | "tab" | "TAB" => "\t".to_string(),
        other => other.to_string(),
    };
    if s.is_empty() || s.len() > 8 || s.contains(['\n', '\r', '"']) {
        return Err(format!(
            "a separator is 1 to 8 characters, not a line end or a quote; got {:?}",
            text.chars().take(20).collect::<String>()
        ));
    }
    Ok(s)
}

impl ColumnArgs {
    pub fn columns(&self) -> anyhow::Result<InteractionColumns> {
        Ok(InteractionColumns {
            user: self.user_col.clone(),
            item: self.item_col.clone(),
            weight: self.weight_col.clone(),
            ts: self.ts_col.clone(),
            text: self.layout(),
        })
    }

    /// The layout of text files.
    pub fn layout(&self) -> Layout {
        Layout {
            separator: self.sep.clone(),
            has_header: !self.no_header,
            skip_bad_rows: self.skip_bad_rows,
        }
    }

    /// The polars reader's options for text files read as frames (event
    /// logs): one-byte separators only.
    pub fn text_options(&self) -> anyhow::Result<TextOptions> {
        let separator = match self.sep.as_deref() {
            None => None,
            Some(s) if s.len() == 1 => Some(s.as_bytes()[0]),
            Some(s) => anyhow::bail!("--sep {s:?}: event logs take a one-character separator"),
        };
        Ok(TextOptions {
            separator,
            has_header: !self.no_header,
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

pub use reelkit_lab::training::{model_user, Triplets};

pub fn from_events(ev: &Events) -> anyhow::Result<Triplets> {
    Ok(Triplets::from_events(ev))
}

/// Whether a file holds a reelkit event log (it has the `watch_ms`,
/// `duration_ms` and `video_id` columns), judged from its schema or its
/// first line.
pub fn looks_like_events(path: &Path, cols: &ColumnArgs) -> anyhow::Result<bool> {
    let want = [schema::WATCH_MS, schema::DURATION_MS, schema::VIDEO_ID];
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    if ["parquet", "pq", "arrow", "ipc", "feather"].contains(&ext) {
        let df = reelkit_logs::files::read_frame_with(path, &cols.text_options()?)
            .with_context(|| format!("reading {}", path.display()))?;
        let names = df.get_column_names_owned();
        return Ok(want.iter().all(|c| names.iter().any(|n| n.as_str() == *c)));
    }
    // Text: the header line alone (an export can be large or odd).
    use std::io::Read;
    let mut head = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&head[..n]);
    let first = text.split(['\n', '\r']).next().unwrap_or_default();
    Ok(want.iter().all(|c| {
        first
            .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
            .any(|f| f == *c)
    }))
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
    Triplets::read(path, &cols.columns()?).context("reading interactions")
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
