//! `reelkit index`: builds and tunes a model's IVF index once and stores it
//! beside the model, where `serve --retrieval ivf` (at start and on every hot
//! reload) and `recommend --retrieval ivf` pick it up instead of building it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use reelkit_ranker::{Ranker, Retrieval};
use serde_json::json;

/// Arguments of `reelkit index`.
#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the index (default: beside the model, `MODEL.ivf`,
    /// where serve and recommend look for it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Build even when the index file is already up to date for this model.
    #[arg(long)]
    pub rebuild: bool,
}

/// Runs `reelkit index`: prints a JSON summary on stdout.
pub fn run(args: IndexArgs) -> anyhow::Result<()> {
    let out = args.out.unwrap_or_else(|| Ranker::ivf_path(&args.model));
    // `--out MODEL` would replace the model with its index.
    crate::data::refuse_overwrite("--out", &out, &[("--model", Some(&args.model))])?;
    let t = Instant::now();
    let ranker = Ranker::open(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let load_s = t.elapsed().as_secs_f64();
    if !args.rebuild && out.exists() {
        let t = Instant::now();
        if let Ok(index) = reelkit_ranker::retrieval::IvfIndex::load(&out, &ranker.items()) {
            let summary = json!({
                "index": out.display().to_string(),
                "status": "up to date",
                "lists": index.nlist(),
                "nprobe": index.nprobe(),
                "items": index.len(),
                "load_s": t.elapsed().as_secs_f64(),
            });
            println!("{}", serde_json::to_string_pretty(&summary)?);
            return Ok(());
        }
    }
    let t = Instant::now();
    let ranker = ranker.with_built_ivf();
    let build_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        ranker.retrieval() == Retrieval::Ivf,
        "model {} has no items to index",
        args.model.display()
    );
    ranker
        .save_ivf(&out)
        .with_context(|| format!("writing the index {}", out.display()))?;
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let summary = json!({
        "index": out.display().to_string(),
        "status": "built",
        "model_load_s": load_s,
        "build_and_tune_s": build_s,
        "file_mb": bytes as f64 / 1e6,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
