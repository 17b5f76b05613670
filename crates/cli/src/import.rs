//! `reelkit import-factors`: a model file from factors trained elsewhere
//! (Spark MLlib ALS, implicit), for `recommend`, `serve` and the simulator.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

/// Arguments of `reelkit import-factors`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// User factors: Spark ALS's `userFactors` directory (or one Parquet
    /// file of it), columns `id` and `features` (an array of floats), or an
    /// id column and one column per dimension.
    #[arg(long)]
    pub users: PathBuf,
    /// Item factors, in the same layout.
    #[arg(long)]
    pub items: PathBuf,
    /// Model file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `reelkit import-factors`: prints a JSON summary on stdout.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    crate::data::refuse_overwrite(
        "--out",
        &args.out,
        &[
            ("--users", Some(&args.users)),
            ("--items", Some(&args.items)),
        ],
    )?;
    let model =
        reelkit_lab::training::import_factors(&args.users, &args.items).with_context(|| {
            format!(
                "importing {} and {}",
                args.users.display(),
                args.items.display()
            )
        })?;
    model
        .save(&args.out)
        .with_context(|| format!("writing model {}", args.out.display()))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "model": args.out,
            "users": model.users.len(),
            "items": model.items.len(),
            "dim": model.factors.dim,
            "string_ids": {"users": model.user_keys.is_some(), "items": model.item_keys.is_some()},
        }))?
    );
    Ok(())
}
