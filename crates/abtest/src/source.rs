//! Where an analysis reads events from ([`Source`]: a file scanned lazily,
//! or a frame in memory), and what every reader of it does first: check the
//! columns the metrics need and derive `completed`, `skipped` and `day`.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use reelkit_logs::{schema, Events, Format};

use crate::error::{Error, Result};
use crate::metrics::Metric;

/// Milliseconds in a UTC day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Where an analysis reads events from: a file, or a frame already in memory.
#[derive(Clone)]
pub enum Source {
    /// An event file (Parquet, CSV/TSV or Arrow IPC, by extension), scanned
    /// lazily.
    Path(PathBuf),
    /// A lazy frame with the event columns; `name` labels it in errors.
    Frame {
        /// What errors call it.
        name: String,
        /// The events.
        frame: Box<LazyFrame>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Source::Frame { name, .. } => f.debug_struct("Frame").field("name", name).finish(),
        }
    }
}

impl From<&Path> for Source {
    fn from(p: &Path) -> Source {
        Source::Path(p.to_path_buf())
    }
}

impl From<&PathBuf> for Source {
    fn from(p: &PathBuf) -> Source {
        Source::Path(p.clone())
    }
}

impl From<PathBuf> for Source {
    fn from(p: PathBuf) -> Source {
        Source::Path(p)
    }
}

impl Source {
    /// An in-memory event log (its columns are copied into a frame once).
    pub fn events(name: &str, events: &Events) -> Result<Source> {
        Ok(Source::Frame {
            name: name.to_string(),
            frame: Box::new(events.to_dataframe()?.lazy()),
        })
    }

    /// What errors call this source: the file's path or the frame's name.
    pub fn name(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Frame { name, .. } => name.clone(),
        }
    }

    /// A lazy scan of the events.
    pub fn scan(&self) -> Result<LazyFrame> {
        match self {
            Source::Path(p) => scan(p),
            Source::Frame { frame, .. } => Ok((**frame).clone()),
        }
    }

    pub(crate) fn err(&self) -> impl Fn(PolarsError) -> Error + '_ {
        move |source| Error::Polars {
            input: self.name(),
            source: reelkit_logs::guard::without_python_hints(source),
        }
    }
}

fn pe(path: &Path) -> impl Fn(PolarsError) -> Error + '_ {
    move |source| Error::Polars {
        input: path.display().to_string(),
        source: reelkit_logs::guard::without_python_hints(source),
    }
}

/// A lazy scan of an event file, format by extension.
pub fn scan(path: &Path) -> Result<LazyFrame> {
    let format = Format::from_path(path)?;
    // polars trusts the sizes a file declares (and aborts on a corrupt one).
    reelkit_logs::guard::check_declared_sizes(path)?;
    // polars (as built) panics on some column types even when they are not
    // selected: such a file is read eagerly without them (with a warning).
    if !reelkit_logs::files::unreadable_columns(path)?.is_empty() {
        return Ok(reelkit_logs::read_frame(path)?.lazy());
    }
    let p = PlRefPath::try_from_path(path).map_err(pe(path))?;
    let lf = match format {
        Format::Parquet => LazyFrame::scan_parquet(p, ScanArgsParquet::default()),
        Format::Ipc => LazyFrame::scan_ipc(p, Default::default(), Default::default()),
        Format::Csv => LazyCsvReader::new(p).with_has_header(true).finish(),
        Format::Tsv => LazyCsvReader::new(p)
            .with_has_header(true)
            .with_separator(b'\t')
            .finish(),
    };
    lf.map_err(pe(path))
}

/// Checks that the columns the metrics need are present, naming the input.
pub(crate) fn require_columns(src: &Source, lf: &mut LazyFrame, metrics: &[Metric]) -> Result<()> {
    let schema = lf.collect_schema().map_err(src.err())?;
    let mut needed: Vec<&str> = vec![
        schema::USER_ID,
        schema::TS_MS,
        schema::SURFACE,
        schema::WATCH_MS,
        schema::DURATION_MS,
    ];
    for m in metrics {
        for a in std::iter::once(&m.numerator).chain(m.denominator.as_ref()) {
            if let Some(c) = a.column.as_deref() {
                if !["completed", "skipped", "day"].contains(&c) {
                    needed.push(c);
                    // A sum of text is no number: refused, not summed as zeros.
                    let dtype = schema.get(c);
                    if a.agg == "sum"
                        && dtype.is_some_and(|t| !(t.is_primitive_numeric() || t.is_bool()))
                    {
                        return Err(Error::Metric {
                            metric: m.name.clone(),
                            reason: format!(
                                "sums column `{c}`, which holds {} in {}, not numbers",
                                dtype.map(|t| t.to_string()).unwrap_or_default(),
                                src.name()
                            ),
                        });
                    }
                }
            }
        }
    }
    for c in needed {
        if schema.get(c).is_none() {
            return Err(reelkit_logs::Error::MissingColumn {
                path: PathBuf::from(src.name()),
                column: c.to_string(),
                available: schema
                    .iter_names()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .into());
        }
    }
    Ok(())
}

/// Adds the derived columns `completed`, `skipped` (0/1) and `day`.
pub(crate) fn derive(lf: LazyFrame) -> LazyFrame {
    let watch = col(schema::WATCH_MS).cast(DataType::Int64);
    let dur = col(schema::DURATION_MS).cast(DataType::Int64);
    lf.with_columns([
        watch
            .clone()
            .gt_eq(dur.clone())
            .cast(DataType::Float64)
            .alias("completed"),
        watch
            .lt(when(dur.clone().lt(lit(3000i64)))
                .then(dur)
                .otherwise(lit(3000i64)))
            .cast(DataType::Float64)
            .alias("skipped"),
        // The UTC day as its first millisecond (timestamps are after 1970).
        (col(schema::TS_MS).cast(DataType::Int64)
            - col(schema::TS_MS).cast(DataType::Int64) % lit(DAY_MS))
        .alias("day"),
    ])
}
