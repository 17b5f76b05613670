//! A model file as `reelkit serve` would answer, replayed as an off-policy
//! candidate on a log's requests ([`reelkit_ope::replay`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use reelkit_logs::polars::prelude::{Column, DataType};

use reelkit_ope::PageRequest;
use reelkit_ranker::{Ranker, Request, Surface};

use crate::error::{Error, Result};

/// Video metadata for a [`ServedCandidate`]: which videos exist, their
/// creator and format (reels shows short ones, watch long ones), and when
/// each was uploaded, if known. Any order, any superset of the model's
/// videos.
#[derive(Debug, Clone, Copy)]
pub struct VideoCatalogue<'a> {
    /// Every catalogued video.
    pub video_id: &'a [u64],
    /// Its creator.
    pub creator_id: &'a [u64],
    /// Whether it is a long video.
    pub long: &'a [bool],
    /// When it was uploaded (Unix ms): a request before then cannot show it.
    pub upload_ts_ms: Option<&'a [i64]>,
}

/// A catalogue file read whole ([`Videos::read`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Videos {
    /// Every catalogued video.
    pub video_id: Vec<u64>,
    /// Its creator.
    pub creator_id: Vec<u64>,
    /// Whether it is a long video.
    pub long: Vec<bool>,
    /// When it was uploaded, when the file says.
    pub upload_ts_ms: Option<Vec<i64>>,
}

impl Videos {
    /// Reads a catalogue file (Parquet, CSV or Arrow IPC): `video_id`,
    /// `creator_id`, `format` (short or long) and, if present,
    /// `upload_ts_ms` — the simulator's videos.parquet is one. A missing
    /// column, a null, a format other than short or long is refused by
    /// name and row.
    pub fn read(path: &Path) -> Result<Videos> {
        let df = reelkit_logs::read_frame(path)?;
        let bad = |message: String| Error::Input(format!("{}: {message}", path.display()));
        let col = |name: &str| -> Result<&Column> {
            df.column(name)
                .map_err(|_| bad(format!("missing column `{name}`")))
        };
        let numbers = |name: &str, to: DataType| -> Result<Column> {
            col(name)?
                .cast(&to)
                .map_err(|e| bad(format!("`{name}` must be a number ({e})")))
        };
        let null = |name: &str, row: usize| bad(format!("`{name}` is null at row {row}"));
        let u64s = |name: &str| -> Result<Vec<u64>> {
            let c = numbers(name, DataType::UInt64)?;
            let c = c.u64().map_err(|e| bad(e.to_string()))?;
            c.iter()
                .enumerate()
                .map(|(row, v)| v.ok_or_else(|| null(name, row)))
                .collect()
        };
        let formats = col("format")?
            .str()
            .map_err(|_| bad("`format` must be text (short|long)".into()))?;
        let long = formats
            .iter()
            .enumerate()
            .map(|(row, v)| match v {
                Some("long") => Ok(true),
                Some("short") => Ok(false),
                other => Err(bad(format!(
                    "`format` at row {row} is {other:?}, expected short or long"
                ))),
            })
            .collect::<Result<Vec<bool>>>()?;
        let upload_ts_ms = match df.column("upload_ts_ms") {
            Err(_) => None,
            Ok(_) => {
                let c = numbers("upload_ts_ms", DataType::Int64)?;
                let c = c.i64().map_err(|e| bad(e.to_string()))?;
                Some(
                    c.iter()
                        .enumerate()
                        .map(|(row, v)| v.ok_or_else(|| null("upload_ts_ms", row)))
                        .collect::<Result<Vec<i64>>>()?,
                )
            }
        };
        Ok(Videos {
            video_id: u64s("video_id")?,
            creator_id: u64s("creator_id")?,
            long,
            upload_ts_ms,
        })
    }

    /// Borrowed, for [`ServedCandidate::new`].
    pub fn as_catalogue(&self) -> VideoCatalogue<'_> {
        VideoCatalogue {
            video_id: &self.video_id,
            creator_id: &self.creator_id,
            long: &self.long,
            upload_ts_ms: self.upload_ts_ms.as_deref(),
        }
    }
}

/// A model as the service answers each request: its best videos on the
/// request's surface outside the user's seen ones; with a catalogue, only
/// videos eligible there, catalogued, and uploaded by the request's time.
#[derive(Debug)]
pub struct ServedCandidate {
    ranker: Ranker,
    /// The model's videos the catalogue does not list: never shown.
    missing: Vec<u64>,
    /// Upload time of the model's catalogued videos (empty: all there).
    uploaded: HashMap<u64, i64>,
    value_model: bool,
}

/// Videos asked of the model at once when its answers are kept for the
/// user's later pages (several pages' worth: one scan of the catalogue
/// serves them).
const DEEP: usize = 64;

/// One user's longer list per surface ([`ServedCandidate`]'s memo): the
/// model's best videos outside what the user had seen when it was asked.
#[derive(Debug, Default)]
pub struct PageLists([Option<Vec<u64>>; 3]);

impl ServedCandidate {
    /// `ranker` answering as the service would, re-ranked by its value model
    /// when `value_model`. A model trained on string ids is refused (a log's
    /// ids are numbers), as is a catalogue whose columns differ in length.
    pub fn new(
        ranker: Ranker,
        catalogue: Option<VideoCatalogue<'_>>,
        value_model: bool,
    ) -> Result<ServedCandidate> {
        if ranker.keyed() != (false, false) {
            return Err(Error::Input(
                "the model was trained on string ids; an event log's ids are numbers".into(),
            ));
        }
        let Some(c) = catalogue else {
            return Ok(ServedCandidate {
                ranker,
                missing: Vec::new(),
                uploaded: HashMap::new(),
                value_model,
            });
        };
        let n = c.video_id.len();
        if c.creator_id.len() != n
            || c.long.len() != n
            || c.upload_ts_ms.is_some_and(|t| t.len() != n)
        {
            return Err(Error::Input(format!(
                "the catalogue's columns differ in length ({n} video ids, {} creators, {} \
                 formats, {} upload times)",
                c.creator_id.len(),
                c.long.len(),
                c.upload_ts_ms.map_or(n, <[i64]>::len)
            )));
        }
        let items = &ranker.model().items;
        let listed: HashSet<u64> = c.video_id.iter().copied().collect();
        let missing: Vec<u64> = (0..items.len() as u32)
            .map(|i| items.id(i))
            .filter(|v| !listed.contains(v))
            .collect();
        let uploaded: HashMap<u64, i64> = match c.upload_ts_ms {
            Some(t) => c
                .video_id
                .iter()
                .zip(t)
                .filter(|(v, _)| items.get(**v).is_some())
                .map(|(&v, &t)| (v, t))
                .collect(),
            None => HashMap::new(),
        };
        // The ranker's catalogue must cover its videos: the missing ones
        // get a placeholder row, and are excluded from every request.
        let (mut ids, mut creators, mut long) =
            (c.video_id.to_vec(), c.creator_id.to_vec(), c.long.to_vec());
        for &v in &missing {
            ids.push(v);
            creators.push(0);
            long.push(false);
        }
        let ranker = ranker.with_catalog(&ids, &creators, &long)?;
        Ok(ServedCandidate {
            ranker,
            missing,
            uploaded,
            value_model,
        })
    }

    /// The model served.
    pub fn ranker(&self) -> &Ranker {
        &self.ranker
    }

    /// Whether a catalogue filters what it shows.
    pub fn has_catalogue(&self) -> bool {
        self.ranker.has_catalog()
    }

    /// The model's `ask` best videos on the page's surface outside `seen`.
    fn ask(&self, page: &PageRequest<'_>, ask: usize) -> Vec<u64> {
        let mut exclude = Vec::with_capacity(page.seen.len() + self.missing.len());
        exclude.extend_from_slice(page.seen);
        exclude.extend_from_slice(&self.missing);
        let req = Request {
            exclude,
            surface: Surface::ALL.get(page.surface as usize).copied(),
            use_value_model: self.value_model,
            ..Request::default()
        };
        let items = self.ranker.recommend(page.user, ask, &req).items;
        items.iter().map(|r| r.item_id).collect()
    }

    /// The first `k` of `list` the user had not seen and that were uploaded
    /// by then.
    fn take(&self, list: &[u64], page: &PageRequest<'_>) -> Vec<u64> {
        let there = |v: &&u64| {
            page.seen.binary_search(v).is_err()
                && self.uploaded.get(*v).is_none_or(|&t| t <= page.ts_ms)
        };
        list.iter().filter(there).take(page.k).copied().collect()
    }
}

impl reelkit_ope::Candidate for ServedCandidate {
    type Memo = PageLists;

    /// What the service would answer to the page's request. Later uploads
    /// are filtered out of a longer list, not excluded by name (a model
    /// trained on the log knows them all). Without the value model, a list
    /// of 64 answers the user's later pages on the surface while it
    /// holds a page of videos still unseen and uploaded: those are then
    /// exactly the best (every video beyond the list scores below all of
    /// it, and seen sets only grow). The value model re-ranks a list whose
    /// order depends on its length, so it asks afresh each page.
    fn page(&self, page: &PageRequest<'_>, memo: &mut PageLists) -> Vec<u64> {
        let s = page.surface as usize % 3;
        if !self.value_model {
            if let Some(list) = &memo.0[s] {
                let out = self.take(list, page);
                if out.len() == page.k {
                    return out;
                }
            }
        }
        let mut ask = if self.value_model {
            2 * page.k
        } else {
            DEEP.max(2 * page.k)
        };
        loop {
            let list = self.ask(page, ask);
            let out = self.take(&list, page);
            if out.len() == page.k || list.len() < ask {
                if !self.value_model {
                    memo.0[s] = Some(list);
                }
                return out;
            }
            ask *= 4;
        }
    }
}
