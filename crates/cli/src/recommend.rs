//! `reelkit recommend`: top-K lists for users, written as `user_id,item_id,rank,score`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use rayon::prelude::*;
use reelkit_logs::polars::prelude::{Column, DataFrame};
use reelkit_ranker::{BatchRequest, Ranker, Recommendations, Request, Surface};

use crate::data::{load_interactions, ColumnArgs};

/// Users per call of the batched retrieval (bounds the memory of the
/// per-user exclusion lists and top-K heaps).
pub const RECOMMEND_BATCH: usize = 4096;

/// Recommends `k` items to every user of `users`, in batches of
/// [`RECOMMEND_BATCH`]: one pass of the batched kernel over the item table
/// serves a whole batch (results equal one request at a time). `exclude` maps
/// a user to the items not to recommend; `each` gets the users in order.
pub fn recommend_in_batches(
    r: &Ranker,
    users: &[u64],
    k: usize,
    exclude: &HashMap<u64, Vec<u64>>,
    use_value_model: bool,
    surface: Option<Surface>,
    mut each: impl FnMut(u64, Recommendations),
) {
    for chunk in users.chunks(RECOMMEND_BATCH) {
        let reqs: Vec<Request> = chunk
            .par_iter()
            .map(|u| Request {
                exclude: exclude.get(u).cloned().unwrap_or_default(),
                use_value_model,
                surface,
                ..Request::default()
            })
            .collect();
        let jobs: Vec<BatchRequest<'_>> = chunk
            .iter()
            .zip(&reqs)
            .map(|(&user_id, request)| BatchRequest {
                user_id,
                k,
                request,
            })
            .collect();
        for (&u, recs) in chunk.iter().zip(r.recommend_batch(&jobs)) {
            each(u, recs);
        }
    }
}

/// Arguments of `reelkit recommend`.
#[derive(Debug, clap::Args)]
pub struct RecommendArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Items per user.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// One user.
    #[arg(long, conflicts_with = "users")]
    pub user: Option<u64>,
    /// A file of users (column --user-col). Without --user or --users: every user of the model.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Interactions whose (user, item) pairs must not be recommended (e.g. the training data).
    #[arg(long)]
    pub exclude: Option<PathBuf>,
    /// Re-rank with the model's value model (ranking stage), when it has one.
    #[arg(long)]
    pub value_model: bool,
    /// reels, feed or watch: a per-surface model (`train --per-surface`)
    /// answers with each user's vector on this surface.
    #[arg(long, value_parser = parse_surface)]
    pub surface: Option<Surface>,
    /// Output file (.csv, .parquet, ...).
    #[arg(long)]
    pub out: PathBuf,
    /// Where candidates are retrieved (as `reelkit serve --retrieval`).
    #[arg(long, value_enum, default_value_t = crate::serve::RetrievalArg::default())]
    pub retrieval: crate::serve::RetrievalArg,
    #[command(flatten)]
    pub cols: ColumnArgs,
}

fn parse_surface(text: &str) -> Result<Surface, String> {
    text.parse()
}

pub fn run(args: RecommendArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.k > 0, "--k must be at least 1");
    crate::data::refuse_overwrite(
        "--out",
        &args.out,
        &[
            ("--model", Some(&args.model)),
            ("--users", args.users.as_deref()),
            ("--exclude", args.exclude.as_deref()),
        ],
    )?;
    let r = Ranker::open(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?
        .with_retrieval(args.retrieval.into());
    if let Some(s) = args.surface {
        anyhow::ensure!(
            r.surfaces().iter().any(|n| n == s.as_str()),
            "--surface {}: {} has no per-surface vectors ({}); train it with --per-surface",
            s.as_str(),
            args.model.display(),
            if r.surfaces().is_empty() {
                "it has one vector per user".to_string()
            } else {
                format!("its surfaces: {}", r.surfaces().join(", "))
            }
        );
    }
    let m = r.model();
    let users: Vec<u64> = match (&args.user, &args.users) {
        (Some(u), _) => vec![*u],
        (None, Some(path)) => {
            reelkit_logs::read_id_column(path, &args.cols.user_col, &args.cols.columns()?.text)
                .with_context(|| format!("reading users {}", path.display()))?
        }
        (None, None) => m.users.ids().to_vec(),
    };
    let mut exclude: HashMap<u64, Vec<u64>> = HashMap::new();
    if let Some(path) = &args.exclude {
        let t = load_interactions(path, &args.cols)?;
        for (u, i) in t.user_id.iter().zip(&t.item_id) {
            exclude.entry(*u).or_default().push(*i);
        }
    }
    let mut rows: Vec<(u64, u64, u32, f32)> = Vec::new();
    recommend_in_batches(
        &r,
        &users,
        args.k,
        &exclude,
        args.value_model,
        args.surface,
        |u, recs| {
            rows.extend(
                recs.items
                    .iter()
                    .enumerate()
                    .map(|(rank, rec)| (u, rec.item_id, rank as u32 + 1, rec.score)),
            )
        },
    );
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "user_id".into(),
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            Column::new(
                "item_id".into(),
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            ),
            Column::new("rank".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
            Column::new("score".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
        ],
    )?;
    reelkit_logs::write_frame(&args.out, &mut df)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "{} recommendations for {} users -> {}",
        rows.len(),
        users.len(),
        args.out.display()
    );
    Ok(())
}
