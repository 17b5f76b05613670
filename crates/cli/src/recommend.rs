//! `reelkit recommend`: top-K lists for users, written as `user_id,item_id,rank,score`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use reelkit_logs::polars::prelude::{Column, DataFrame};
use reelkit_ranker::{Ranker, Surface};

use crate::data::{load_interactions, ColumnArgs};

/// Arguments of `reelkit recommend`.
#[derive(Debug, clap::Args)]
pub struct RecommendArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Items per user.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// One user (its id as trained: a number, or the string of a model
    /// trained on string ids).
    #[arg(long, conflicts_with = "users")]
    pub user: Option<String>,
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
    #[arg(long, value_enum, default_value_t = reelkit_ranker::Retrieval::default())]
    pub retrieval: reelkit_ranker::Retrieval,
    #[command(flatten)]
    pub cols: ColumnArgs,
}

fn parse_surface(text: &str) -> Result<Surface, reelkit_ranker::UnknownSurface> {
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
        .with_retrieval(args.retrieval);
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
        (Some(u), _) => vec![match crate::data::model_user(&r, u) {
            Some(id) => id,
            // A numeric user the model does not know: the popularity fallback.
            None if !r.keyed().0 => u.trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "--user {}: not a number, and the users of {} are numbers",
                    crate::data::cut(u),
                    args.model.display()
                )
            })?,
            None => anyhow::bail!(
                "--user {}: no such user in {}",
                crate::data::cut(u),
                args.model.display()
            ),
        }],
        (None, Some(path)) => {
            let ids = reelkit_logs::read_ids(path, &args.cols.user_col, &args.cols.layout())
                .with_context(|| format!("reading users {}", path.display()))?;
            match ids {
                reelkit_logs::Ids::Numbers(v) if !r.keyed().0 => v,
                reelkit_logs::Ids::Numbers(v) => v
                    .iter()
                    .filter_map(|n| r.user_of_key(&n.to_string()))
                    .collect(),
                reelkit_logs::Ids::Strings(v) => v
                    .iter()
                    .filter_map(|k| crate::data::model_user(&r, k))
                    .collect(),
            }
        }
        (None, None) => m.users.ids().to_vec(),
    };
    let mut exclude: HashMap<u64, Vec<u64>> = HashMap::new();
    if let Some(path) = &args.exclude {
        let t = load_interactions(path, &args.cols)?;
        let (us, is) = t.model_ids(&r);
        for (u, i) in us.iter().zip(&is) {
            if let (Some(u), Some(i)) = (u, i) {
                exclude.entry(*u).or_default().push(*i);
            }
        }
    }
    let mut rows: Vec<(u64, u64, u32, f32)> = Vec::new();
    r.recommend_users(
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
    // Ids as trained: strings for a model trained on string ids.
    let user_col = match r.keyed().0 {
        true => Column::new(
            "user_id".into(),
            rows.iter()
                .map(|x| r.user_key(x.0).unwrap_or_default().to_string())
                .collect::<Vec<_>>(),
        ),
        false => Column::new(
            "user_id".into(),
            rows.iter().map(|x| x.0).collect::<Vec<_>>(),
        ),
    };
    let item_col = match r.keyed().1 {
        true => Column::new(
            "item_id".into(),
            rows.iter()
                .map(|x| r.item_key(x.1).unwrap_or_default().to_string())
                .collect::<Vec<_>>(),
        ),
        false => Column::new(
            "item_id".into(),
            rows.iter().map(|x| x.1).collect::<Vec<_>>(),
        ),
    };
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            user_col,
            item_col,
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
