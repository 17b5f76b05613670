//! Exposure logs written by `reelkit serve --exposures DIR`: what each user was
//! served, under which arm or interleaving team, and when.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use reelkit_logs::Assignments;

use crate::error::{Error, Result};

/// Every response of an exposure log, one entry per response.
#[derive(Debug, Clone, Default)]
pub struct Exposures {
    /// The directory read.
    pub dir: PathBuf,
    /// Users, one per exposure row.
    pub user_id: Vec<u64>,
    /// When each response was served (Unix ms).
    pub ts_ms: Vec<i64>,
    /// The request each row answered.
    pub request_id: Vec<u64>,
    /// `single`, `ab` or `interleave` (one design per log).
    pub experiment: String,
    /// The arm's model per response (`None` when interleaving).
    pub variant: Vec<Option<String>>,
    /// The videos served, in order.
    pub video_ids: Vec<Vec<u64>>,
    /// The team that placed each video (interleaving only).
    pub teams: Vec<Option<Vec<String>>>,
    /// `name=version,…` of the first response: the models in team order.
    pub model_versions: String,
    /// Unfinished files (`.parquet.partial`, e.g. after a crash) left out.
    pub skipped: Vec<PathBuf>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what: format!("exposure log {}", path.display()),
        reason: reason.into(),
    }
}

fn column<'a>(path: &Path, df: &'a DataFrame, name: &str) -> Result<&'a Column> {
    df.column(name).map_err(|_| {
        invalid(
            path,
            format!(
                "missing column `{name}` (has: {})",
                df.get_column_names()
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

fn wrong_type(path: &Path, name: &str, e: PolarsError) -> Error {
    invalid(path, format!("column `{name}` has the wrong type: {e}"))
}

/// Reads every finished file (`*.parquet`, in name order, i.e. time order) of
/// an exposure directory. A trailing unfinished `.partial` file is skipped
/// with a warning; a finished file that cannot be read (truncated, not
/// Parquet) is an error naming it; so is a directory with no finished file or
/// a log that mixes designs.
pub fn read_exposures(dir: &Path) -> Result<Exposures> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for e in entries {
        let p = e
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".parquet") {
            files.push(p);
        } else if name.ends_with(".parquet.partial") {
            skipped.push(p);
        }
    }
    files.sort();
    skipped.sort();
    for p in &skipped {
        tracing::warn!(
            "skipping {}: an exposure file still being written, or left unfinished by a crash",
            p.display()
        );
    }
    if files.is_empty() {
        return Err(invalid(
            dir,
            format!(
                "no finished exposure file (*.parquet){}",
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(", only {} unfinished .partial file(s)", skipped.len())
                }
            ),
        ));
    }
    let mut out = Exposures {
        dir: dir.to_path_buf(),
        skipped,
        ..Exposures::default()
    };
    for path in &files {
        reelkit_logs::guard::check_declared_sizes(path)?;
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let df = ParquetReader::new(file).finish().map_err(|e| {
            invalid(
                path,
                format!("cannot be read (truncated or not Parquet): {e}"),
            )
        })?;
        append(path, &df, &mut out)?;
    }
    Ok(out)
}

fn append(path: &Path, df: &DataFrame, out: &mut Exposures) -> Result<()> {
    let u64s = |name: &str| -> Result<Vec<u64>> {
        let c = column(path, df, name)?;
        let c = c
            .cast(&DataType::UInt64)
            .map_err(|e| wrong_type(path, name, e))?;
        let ca = c.u64().map_err(|e| wrong_type(path, name, e))?;
        ca.iter()
            .enumerate()
            .map(|(row, v)| {
                v.ok_or_else(|| invalid(path, format!("`{name}` is null at row {row}")))
            })
            .collect()
    };
    let users = u64s("user_id")?;
    let requests = u64s("request_id")?;
    let ts = {
        let c = column(path, df, "ts_ms")?
            .cast(&DataType::Int64)
            .map_err(|e| wrong_type(path, "ts_ms", e))?;
        let ca = c.i64().map_err(|e| wrong_type(path, "ts_ms", e))?.clone();
        ca.iter()
            .enumerate()
            .map(|(row, v)| v.ok_or_else(|| invalid(path, format!("`ts_ms` is null at row {row}"))))
            .collect::<Result<Vec<i64>>>()?
    };
    let strings = |name: &str| -> Result<Vec<Option<String>>> {
        let c = column(path, df, name)?;
        let ca = c.str().map_err(|e| wrong_type(path, name, e))?;
        Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
    };
    let experiment = strings("experiment")?;
    let variant = strings("variant")?;
    let versions = strings("model_versions")?;
    let videos_col = column(path, df, "video_ids")?;
    let videos = videos_col
        .list()
        .map_err(|e| wrong_type(path, "video_ids", e))?;
    let teams_col = column(path, df, "teams")?;
    let teams = teams_col.list().map_err(|e| wrong_type(path, "teams", e))?;
    for row in 0..videos.len() {
        let (v, t) = (videos.get_as_series(row), teams.get_as_series(row));
        let v = v.ok_or_else(|| invalid(path, format!("`video_ids` is null at row {row}")))?;
        let v = v
            .cast(&DataType::UInt64)
            .map_err(|e| wrong_type(path, "video_ids", e))?;
        let ids: Vec<u64> = v
            .u64()
            .map_err(|e| wrong_type(path, "video_ids", e))?
            .iter()
            .flatten()
            .collect();
        let team = match t {
            None => None,
            Some(t) => {
                let t: Vec<String> = t
                    .str()
                    .map_err(|e| wrong_type(path, "teams", e))?
                    .iter()
                    .map(|x| x.unwrap_or("").to_string())
                    .collect();
                if t.len() != ids.len() {
                    return Err(invalid(
                        path,
                        format!("row {row}: {} teams for {} videos", t.len(), ids.len()),
                    ));
                }
                Some(t)
            }
        };
        out.video_ids.push(ids);
        out.teams.push(team);
    }
    for (row, e) in experiment.iter().enumerate() {
        let e = e.as_deref().unwrap_or("");
        if out.experiment.is_empty() {
            out.experiment = e.to_string();
        } else if out.experiment != e {
            return Err(invalid(
                path,
                format!(
                    "row {row} is from a `{e}` experiment but earlier rows from `{}`: one directory per experiment",
                    out.experiment
                ),
            ));
        }
    }
    if out.model_versions.is_empty() {
        out.model_versions = versions.into_iter().flatten().next().unwrap_or_default();
    }
    out.user_id.extend(users);
    out.request_id.extend(requests);
    out.ts_ms.extend(ts);
    out.variant.extend(variant);
    Ok(())
}

/// Who entered an A/B experiment, in which arm, and when.
#[derive(Debug, Clone, Default)]
pub struct Exposed {
    /// Each exposed user's arm.
    pub assignments: Assignments,
    /// Each exposed user's first exposure (Unix ms), in `assignments` order.
    pub first_ts_ms: Vec<i64>,
}

impl Exposures {
    /// Responses in the log.
    pub fn len(&self) -> usize {
        self.user_id.len()
    }

    /// Whether the log holds no response.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }

    /// The assignment an A/B (or single-model) log implies: every exposed
    /// user in the arm that served them, entering at their first exposure. A
    /// user served by two arms is an error naming both; so is an
    /// interleaving log.
    pub fn exposed(&self) -> Result<Exposed> {
        if self.experiment == "interleave" {
            return Err(invalid(
                &self.dir,
                "this is an interleaving experiment: analyse it with `reelkit ab interleave`",
            ));
        }
        let mut index: HashMap<u64, usize> = HashMap::with_capacity(self.len() / 4);
        let mut out = Exposed::default();
        for i in 0..self.len() {
            let u = self.user_id[i];
            let v = self.variant[i].as_deref().ok_or_else(|| {
                invalid(&self.dir, format!("response {i} (user {u}) has no variant"))
            })?;
            match index.get(&u) {
                Some(&j) => {
                    if out.assignments.variant[j] != v {
                        return Err(invalid(
                            &self.dir,
                            format!(
                                "user {u} was served by `{}` and by `{v}` (request {}): a user in two arms",
                                out.assignments.variant[j], self.request_id[i]
                            ),
                        ));
                    }
                    out.first_ts_ms[j] = out.first_ts_ms[j].min(self.ts_ms[i]);
                }
                None => {
                    index.insert(u, out.first_ts_ms.len());
                    out.assignments.user_id.push(u);
                    out.assignments.variant.push(v.to_string());
                    out.first_ts_ms.push(self.ts_ms[i]);
                }
            }
        }
        Ok(out)
    }

    /// The two teams of an interleaving log, in the order the server gave
    /// its models (team A first).
    pub fn teams(&self) -> Result<[String; 2]> {
        if self.experiment != "interleave" {
            return Err(invalid(
                &self.dir,
                format!(
                    "this is a `{}` experiment, not an interleaving one: analyse it with `reelkit ab analyze --exposures`",
                    self.experiment
                ),
            ));
        }
        let names: Vec<String> = self
            .model_versions
            .split(',')
            .filter_map(|p| p.split_once('=').map(|(n, _)| n.to_string()))
            .collect();
        match names.as_slice() {
            [a, b] => Ok([a.clone(), b.clone()]),
            _ => Err(invalid(
                &self.dir,
                format!(
                    "model_versions `{}` does not name two models",
                    self.model_versions
                ),
            )),
        }
    }
}

/// How an exposure log's users and the event log overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dilution {
    /// Distinct users in the events.
    pub event_users: u64,
    /// Exposed users with at least one event.
    pub exposed_users_with_events: u64,
    /// Events of exposed users.
    pub events_of_exposed: u64,
    /// … of which at or after the user's first exposure.
    pub events_after: u64,
}

fn first_exposures(exposed: &Exposed) -> Result<LazyFrame> {
    let df = DataFrame::new(
        exposed.assignments.len(),
        vec![
            Column::new(
                reelkit_logs::schema::USER_ID.into(),
                &exposed.assignments.user_id,
            ),
            Column::new("first_exposure_ms".into(), &exposed.first_ts_ms),
        ],
    )
    .map_err(|e| Error::Polars {
        input: "<exposures>".into(),
        source: reelkit_logs::guard::without_python_hints(e),
    })?;
    Ok(df.lazy())
}

fn events_with_first_exposure(events: &Path, exposed: &Exposed) -> Result<LazyFrame> {
    use reelkit_logs::schema::USER_ID;
    let lf = crate::source::scan(events)?
        .with_column(col(USER_ID).cast(DataType::UInt64))
        .join(
            first_exposures(exposed)?,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Inner),
        );
    Ok(lf)
}

/// Counts, for the report, how many users and events an exposure-based
/// analysis keeps.
pub fn exposure_dilution(events: &Path, exposed: &Exposed) -> Result<Dilution> {
    use reelkit_logs::schema::{TS_MS, USER_ID};
    let perr = |e: PolarsError| Error::Polars {
        input: events.display().to_string(),
        source: reelkit_logs::guard::without_python_hints(e),
    };
    let all = crate::source::scan(events)?
        .select([col(USER_ID)
            .n_unique()
            .cast(DataType::UInt64)
            .alias("users")])
        .collect()
        .map_err(perr)?;
    let joined = events_with_first_exposure(events, exposed)?
        .select([
            col(USER_ID)
                .n_unique()
                .cast(DataType::UInt64)
                .alias("users"),
            len().cast(DataType::UInt64).alias("events"),
            col(TS_MS)
                .cast(DataType::Int64)
                .gt_eq(col("first_exposure_ms"))
                .cast(DataType::UInt64)
                .sum()
                .alias("after"),
        ])
        .collect()
        .map_err(perr)?;
    let get = |df: &DataFrame, c: &str| -> Result<u64> {
        Ok(df
            .column(c)
            .and_then(|c| c.u64().cloned())
            .map_err(perr)?
            .get(0)
            .unwrap_or(0))
    };
    Ok(Dilution {
        event_users: get(&all, "users")?,
        exposed_users_with_events: get(&joined, "users")?,
        events_of_exposed: get(&joined, "events")?,
        events_after: get(&joined, "after")?,
    })
}

/// The events of exposed users at or after their first exposure: the input
/// of a triggered analysis.
pub fn triggered_events(events: &Path, exposed: &Exposed) -> Result<crate::source::Source> {
    use reelkit_logs::schema::TS_MS;
    let lf = events_with_first_exposure(events, exposed)?
        .filter(
            col(TS_MS)
                .cast(DataType::Int64)
                .gt_eq(col("first_exposure_ms")),
        )
        .drop(Selector::ByName {
            names: ["first_exposure_ms".into()].into(),
            strict: true,
        });
    Ok(crate::source::Source::Frame {
        name: format!("{} (from first exposure on)", events.display()),
        frame: Box::new(lf),
    })
}

/// Analyses `events` with the assignment the exposure log in `dir` implies
/// (each user's first exposure; users never exposed are left out) and, when
/// `triggered`, only the events from each user's first exposure on. The
/// report's notes say how many users and events were kept and, untriggered,
/// how much pre-exposure traffic dilutes the effect. Unfinished exposure
/// files are skipped with a warning; a user served by two arms is an error.
pub fn analyze_by_exposure(
    events: &Path,
    dir: &Path,
    triggered: bool,
    pre_events: Option<&Path>,
    metrics: &[crate::Metric],
    cfg: &crate::AnalysisConfig,
    extras: crate::Extras,
) -> Result<crate::Report> {
    // `read_exposures` warns of unfinished files it skips.
    let exposed = read_exposures(dir)?.exposed()?;
    let stats = exposure_dilution(events, &exposed).map_err(|e| Error::Invalid {
        what: format!("joining events {} to exposures", events.display()),
        reason: e.to_string(),
    })?;
    if stats.exposed_users_with_events == 0 {
        return Err(Error::Invalid {
            what: format!(
                "the events {} and the exposures {}",
                events.display(),
                dir.display()
            ),
            reason: format!(
                "they share no user ({} users in the events, {} exposed)",
                stats.event_users,
                exposed.assignments.len()
            ),
        });
    }
    let before = 1.0 - stats.events_after as f64 / stats.events_of_exposed.max(1) as f64;
    let mut notes = vec![format!(
        "Assignment from the exposure log {}: {} users exposed ({} of them with events); {} of the {} users in the events were never exposed and are left out.",
        dir.display(),
        exposed.assignments.len(),
        stats.exposed_users_with_events,
        stats.event_users - stats.exposed_users_with_events,
        stats.event_users
    )];
    let source: crate::source::Source = if triggered {
        notes.push(format!(
            "Triggered analysis: only events at or after each user's first exposure count ({} of the exposed users' {} events, {:.1}%; {:.1}% from before exposure removed). Effects are per exposed user over the time after their exposure.",
            stats.events_after,
            stats.events_of_exposed,
            100.0 * (1.0 - before),
            100.0 * before
        ));
        triggered_events(events, &exposed)?
    } else {
        notes.push(format!(
            "Not triggered: {:.1}% of the exposed users' events came before their first exposure and dilute the effect (use --triggered to leave them out).",
            100.0 * before
        ));
        events.into()
    };
    let mut inputs = crate::Inputs::new(source, &exposed.assignments, metrics);
    if let Some(pre) = pre_events {
        inputs = inputs.with_pre(pre);
    }
    let mut report = crate::analyze_report(&inputs, cfg, extras)?;
    report.notes = notes;
    Ok(report)
}
