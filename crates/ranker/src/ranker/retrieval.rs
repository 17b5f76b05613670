//! Where a [`Ranker`] retrieves candidates before exact scoring: the f32
//! table, a reduced-precision copy, or an inverted file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::half::HalfTable;
use crate::int8::Int8Table;
use crate::ivf::{IvfFilter, IvfIndex, IvfParams, IvfQuery};
use crate::topk::Scored;

use super::*;

/// Where candidates are retrieved before exact scoring.
///
/// The default, everywhere (a new [`Ranker`], `reelkit_serve::ServeConfig`,
/// `reelkit serve` and `reelkit recommend`), is [`Retrieval::Int8`]: a
/// quarter of the bytes to stream per scan, and the answer is the exact
/// top-k whenever the exact top-k lies among the `4k + 64` int8 candidates,
/// which it did for every query measured (recall@100 = 1.000 on a million
/// items, BENCHMARKS.md). Choose [`Retrieval::Exact`] where no miss can be
/// tolerated or memory is tight (the int8 copy adds a quarter of the item
/// table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retrieval {
    /// Scan the f32 table (every score exact).
    Exact,
    /// Scan an f16 copy (half the bytes), rescore candidates exactly.
    Half,
    /// Scan an int8 copy (a quarter of the bytes), rescore candidates exactly.
    #[default]
    Int8,
    /// An inverted file ([`crate::retrieval::IvfIndex`]): a query scans only the int8
    /// lists nearest it, and its candidates are rescored exactly; `nprobe` is
    /// tuned to recall@100 ≥ 0.95 on a sample of the model's user
    /// embeddings. Sub-linear in the catalogue (for millions of videos);
    /// surface filters are applied inside the scan. Loaded from the index
    /// file beside the model ([`Ranker::ivf_path`], written by
    /// [`Ranker::save_ivf`] or `reelkit index`) when that file was built
    /// from this model; built and tuned when the ranker is made otherwise
    /// (a missing, stale or corrupt file is logged and rebuilt, never used).
    Ivf,
}

impl Retrieval {
    /// Every choice, in the order help texts list them.
    pub const ALL: [Retrieval; 4] = [
        Retrieval::Exact,
        Retrieval::Half,
        Retrieval::Int8,
        Retrieval::Ivf,
    ];

    /// Its name on the command line and in the Python package.
    pub fn as_str(self) -> &'static str {
        match self {
            Retrieval::Exact => "exact",
            Retrieval::Half => "f16",
            Retrieval::Int8 => "int8",
            Retrieval::Ivf => "ivf",
        }
    }
}

impl std::fmt::Display for Retrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A retrieval name that is none of [`Retrieval::ALL`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retrieval must be exact, f16, int8 or ivf; got {0:?}")]
pub struct UnknownRetrieval(pub String);

impl std::str::FromStr for Retrieval {
    type Err = UnknownRetrieval;

    /// `exact`, `f16` (or `half`), `int8`, `ivf`.
    fn from_str(s: &str) -> Result<Retrieval, UnknownRetrieval> {
        match s {
            "half" => Ok(Retrieval::Half),
            _ => Retrieval::ALL
                .into_iter()
                .find(|r| r.as_str() == s)
                .ok_or_else(|| UnknownRetrieval(s.to_string())),
        }
    }
}

#[cfg(feature = "clap")]
impl clap::ValueEnum for Retrieval {
    fn value_variants<'a>() -> &'a [Self] {
        &Retrieval::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let value = clap::builder::PossibleValue::new(self.as_str());
        Some(match self {
            Retrieval::Half => value.alias("half"),
            Retrieval::Ivf => value.help(
                "Inverted file (built at load, nprobe tuned to recall@100 ≥ 0.95): \
                 sub-linear, for catalogues of millions",
            ),
            _ => value,
        })
    }
}

/// A reduced-precision copy of the item table for candidate retrieval.
#[derive(Debug)]
pub(super) enum Approx {
    Half(HalfTable),
    Int8(Int8Table),
    Ivf(Box<IvfState>),
}

/// The inverted file and, once a catalogue is attached, the surfaces as
/// allowed sets (reels: short videos; watch: long ones).
#[derive(Debug)]
pub(super) struct IvfState {
    pub(super) index: IvfIndex,
    pub(super) surfaces: Option<[IvfFilter; 2]>,
    /// The index file it was loaded from (none: built here).
    pub(super) from_file: Option<PathBuf>,
}

/// Recall@100 the IVF's nprobe is tuned to.
const IVF_TARGET_RECALL: f64 = 0.95;

/// User embeddings the IVF's nprobe is tuned on.
const IVF_TUNING_USERS: usize = 256;

impl Approx {
    pub(super) fn top_k_batch(
        &self,
        queries: &[&[f32]],
        k: &[usize],
        exclude: &[&[u32]],
    ) -> Vec<Vec<Scored>> {
        match self {
            Approx::Half(h) => h.top_k_batch(queries, k, exclude),
            Approx::Int8(t) => t.top_k_batch(queries, k, exclude),
            Approx::Ivf(_) => unreachable!("the IVF retrieves through IvfIndex::search"),
        }
    }
}

impl Ranker {
    /// Chooses where candidates are retrieved ([`Retrieval`]). The reduced
    /// copies (f16: half the bytes to stream per scan; int8: a quarter) give
    /// `OVERSAMPLE · k + 64` candidates that are rescored exactly in f32: the
    /// result is the exact top-k whenever the exact top-k lies among them.
    pub fn with_retrieval(mut self, r: Retrieval) -> Ranker {
        if self.retrieval() == r {
            return self;
        }
        let (dim, items, bias) = (
            self.model.dim,
            &self.model.item_factors,
            &self.model.item_bias,
        );
        self.approx = match r {
            Retrieval::Exact => None,
            Retrieval::Half => Some(Approx::Half(HalfTable::new(dim, items, Some(bias)))),
            Retrieval::Int8 => Some(Approx::Int8(Int8Table::new(dim, items, Some(bias)))),
            Retrieval::Ivf => {
                self.items_in_huge_pages();
                self.load_or_build_ivf()
            }
        };
        self.ivf_surfaces();
        self
    }

    /// Where candidates are retrieved now (an IVF asked of an empty
    /// catalogue falls back to [`Retrieval::Exact`]).
    pub fn retrieval(&self) -> Retrieval {
        match self.approx {
            None => Retrieval::Exact,
            Some(Approx::Half(_)) => Retrieval::Half,
            Some(Approx::Int8(_)) => Retrieval::Int8,
            Some(Approx::Ivf(_)) => Retrieval::Ivf,
        }
    }

    /// IVF retrieval over an index built and tuned now, whatever index file
    /// lies beside the model (what `reelkit index` writes).
    pub fn with_built_ivf(mut self) -> Ranker {
        if self.retrieval() != Retrieval::Ivf {
            self.items_in_huge_pages();
        }
        self.approx = self.built_ivf();
        self.ivf_surfaces();
        self
    }

    /// The index file the IVF retrieval was loaded from (none: built when
    /// the ranker was made, or another retrieval).
    pub fn ivf_file(&self) -> Option<&Path> {
        match &self.approx {
            Some(Approx::Ivf(state)) => state.from_file.as_deref(),
            _ => None,
        }
    }

    /// Writes the IVF index to `path` (atomically; see
    /// [`crate::retrieval::IvfIndex::save`]); an error unless the retrieval is
    /// [`Retrieval::Ivf`].
    pub fn save_ivf(&self, path: &Path) -> Result<()> {
        match &self.approx {
            Some(Approx::Ivf(state)) => state.index.save(path),
            _ => Err(Error::InvalidInput(
                "the ranker has no IVF index to save (choose Retrieval::Ivf)".into(),
            )),
        }
    }

    /// The IVF rescores rows scattered over the item table: unless the model
    /// was read from its file by [`Ranker::open`] (into 2 MiB pages already,
    /// see [`MappedModel::open`]), the table is copied into such pages
    /// ([`crate::in_huge_pages`]).
    fn items_in_huge_pages(&mut self) {
        if self.file.is_none() {
            self.model.item_factors = crate::pages::in_huge_pages(&self.model.item_factors);
        }
    }

    /// The index file beside the model when it was built from this model's
    /// items; otherwise (none, stale, corrupt) one built now. Either way
    /// logged: an operator cannot otherwise tell a 4 s load from a 3-minute
    /// build.
    fn load_or_build_ivf(&self) -> Option<Approx> {
        if let Some(file) = self.file.as_deref().map(Ranker::ivf_path) {
            if file.exists() {
                match IvfIndex::load(&file, &self.items()) {
                    Ok(index) => {
                        tracing::info!(index = %file.display(), lists = index.nlist(), nprobe = index.nprobe(), "IVF index loaded from beside the model");
                        return Some(Approx::Ivf(Box::new(IvfState {
                            index,
                            surfaces: None,
                            from_file: Some(file),
                        })));
                    }
                    // As an error field: the log line carries its causes too
                    // (the reason a file is refused, not only its path).
                    Err(e) => tracing::warn!(
                        error = &e as &(dyn std::error::Error + 'static),
                        "index file not used; building the index instead"
                    ),
                }
            }
            tracing::info!(
                index = %file.display(),
                "IVF index built and tuned here (no usable index file beside the model; `reelkit index` writes one)"
            );
        }
        self.built_ivf()
    }

    /// An IVF built and tuned now (none for an empty catalogue: exact
    /// retrieval).
    fn built_ivf(&self) -> Option<Approx> {
        self.build_ivf().map(|index| {
            Approx::Ivf(Box::new(IvfState {
                index,
                surfaces: None,
                from_file: None,
            }))
        })
    }

    /// The inverted file over the model's items, nprobe tuned on a seeded
    /// sample of its users (or, without users, of its items).
    fn build_ivf(&self) -> Option<IvfIndex> {
        let table = self.items();
        let mut index = IvfIndex::build(&table, &IvfParams::default()).ok()?;
        let d = self.model.dim;
        let (rows, n) = if self.model.users.is_empty() {
            (&self.model.item_factors[..], self.model.items.len())
        } else {
            (&self.model.user_factors[..], self.model.users.len())
        };
        let step = n.div_ceil(IVF_TUNING_USERS).max(1);
        let sample: Vec<&[f32]> = (0..n)
            .step_by(step)
            .map(|u| &rows[u * d..(u + 1) * d])
            .collect();
        let k = 100.min(self.model.items.len());
        if !sample.is_empty() && k > 0 {
            index
                .tune_nprobe(&table, &sample, k, IVF_TARGET_RECALL)
                .ok()?;
        }
        Some(index)
    }

    /// Prepares the surfaces as IVF filters when both an IVF and a catalogue
    /// are present.
    pub(super) fn ivf_surfaces(&mut self) {
        if let (Some(Approx::Ivf(state)), Some(cat)) = (&mut self.approx, &self.catalog) {
            let reels = state.index.filter(|i| cat.long.binary_search(&i).is_err());
            let watch = state.index.filter(|i| cat.long.binary_search(&i).is_ok());
            state.surfaces = Some([reels, watch]);
        }
    }

    /// The IVF filter of a request's surface (IVF retrieval with a catalogue).
    pub(super) fn surface_filter(&self, req: &Request) -> Option<&IvfFilter> {
        match (&self.approx, req.surface) {
            (Some(Approx::Ivf(state)), Some(Surface::Reels)) => {
                state.surfaces.as_ref().map(|s| &s[0])
            }
            (Some(Approx::Ivf(state)), Some(Surface::Watch)) => {
                state.surfaces.as_ref().map(|s| &s[1])
            }
            _ => None,
        }
    }

    /// Candidates wanted from a reduced copy for a final `k`.
    pub(super) fn candidate_pool(&self, k: usize) -> usize {
        k.saturating_mul(OVERSAMPLE)
            .saturating_add(64)
            .min(self.model.items.len())
    }

    /// Exact (or reduced-precision-retrieved, exactly rescored) top-`k` of
    /// one query; `filter` (IVF only) restricts the items.
    pub(super) fn retrieve(
        &self,
        q: &[f32],
        k: usize,
        exclude: &[u32],
        filter: Option<&IvfFilter>,
    ) -> Vec<Scored> {
        if let Some(Approx::Ivf(state)) = &self.approx {
            let query = IvfQuery {
                vector: q,
                k,
                exclude,
                filter,
            };
            // The index was built from this table, and q has its dimension.
            return state
                .index
                .search_one(&self.items(), &query)
                .unwrap_or_default();
        }
        if let Some(h) = &self.approx {
            let pool = self.candidate_pool(k);
            let cands = h
                .top_k_batch(&[q], &[pool], &[exclude])
                .pop()
                .unwrap_or_default();
            return self.items().rescore(q, k, &cands);
        }
        let items = self.items();
        if rayon::current_thread_index().is_some() {
            items.top_k(q, k, exclude)
        } else {
            items.top_k_parallel(q, k, exclude)
        }
    }
}
