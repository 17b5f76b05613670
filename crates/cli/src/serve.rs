//! `reelkit serve`: the model behind HTTP (see reelkit-serve).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use reelkit_logs::polars::prelude::DataType;
use reelkit_serve::{AppState, Catalog, ServeConfig};

/// Arguments of `reelkit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Model file (memory-mapped; reloaded by POST /admin/reload or SIGHUP).
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Video catalogue (`video_id`, `creator_id`, `format` = short|long), e.g. the
    /// simulator's videos.parquet: enables `surface` and `max_per_creator`.
    #[arg(long)]
    videos: Option<PathBuf>,
    /// Largest k a request may ask for.
    #[arg(long, default_value_t = 1_000)]
    max_k: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Scoring time allowed per request, milliseconds.
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
    /// Where candidates are retrieved: `f16` (half the bytes) or `int8` (a
    /// quarter) copies whose candidates are rescored exactly, or the `exact`
    /// f32 table.
    #[arg(long, value_enum, default_value_t = RetrievalArg::Int8)]
    retrieval: RetrievalArg,
}

/// `--retrieval` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RetrievalArg {
    Exact,
    F16,
    Int8,
}

impl From<RetrievalArg> for reelkit_ranker::Retrieval {
    fn from(r: RetrievalArg) -> Self {
        match r {
            RetrievalArg::Exact => reelkit_ranker::Retrieval::Exact,
            RetrievalArg::F16 => reelkit_ranker::Retrieval::Half,
            RetrievalArg::Int8 => reelkit_ranker::Retrieval::Int8,
        }
    }
}

/// Reads a catalogue file: `video_id`, `creator_id`, `format`.
pub fn read_catalog(path: &std::path::Path) -> anyhow::Result<Catalog> {
    let df = reelkit_logs::read_frame(path)?;
    let col = |name: &str| {
        df.column(name)
            .with_context(|| format!("{}: missing column `{name}`", path.display()))
    };
    let u64s = |name: &str| -> anyhow::Result<Vec<u64>> {
        let c = col(name)?.cast(&DataType::UInt64)?;
        c.u64()?
            .iter()
            .enumerate()
            .map(|(row, v)| {
                v.with_context(|| format!("{}: `{name}` is null at row {row}", path.display()))
            })
            .collect()
    };
    let formats = col("format")?;
    let long = formats
        .str()
        .with_context(|| format!("{}: `format` must be text (short|long)", path.display()))?
        .iter()
        .enumerate()
        .map(|(row, v)| match v {
            Some("long") => Ok(true),
            Some("short") => Ok(false),
            other => anyhow::bail!(
                "{}: `format` at row {row} is {other:?}, expected short or long",
                path.display()
            ),
        })
        .collect::<anyhow::Result<Vec<bool>>>()?;
    Ok(Catalog {
        video_id: u64s("video_id")?,
        creator_id: u64s("creator_id")?,
        long,
    })
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let catalog = args.videos.as_deref().map(read_catalog).transpose()?;
    let config = ServeConfig {
        max_k: args.max_k,
        max_body_bytes: args.max_body_bytes,
        timeout: Duration::from_millis(args.timeout_ms),
        retrieval: args.retrieval.into(),
        ..ServeConfig::default()
    };
    let state = Arc::new(
        AppState::open(&args.model, catalog, config)
            .with_context(|| format!("loading model {}", args.model.display()))?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        eprintln!(
            "serving {} (version {}) on http://{}",
            args.model.display(),
            state.model().version,
            listener.local_addr()?
        );
        reelkit_serve::serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
    })
}
