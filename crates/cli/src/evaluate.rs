//! `reelkit eval`: offline metrics of a model against held-out interactions.

use std::path::PathBuf;

use anyhow::Context;
use reelkit_ranker::{
    evaluation::{evaluate_embeddings, evaluate_popularity, Metrics},
    Csr, Ranker,
};
use serde_json::json;

use crate::data::{load_any, ColumnArgs, Triplets};

/// Arguments of `reelkit eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The interactions the model was trained on (excluded from its lists).
    #[arg(long)]
    pub train: PathBuf,
    /// Held-out interactions (the relevant items).
    #[arg(long)]
    pub test: PathBuf,
    /// Cut-off of the ranked lists.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    #[command(flatten)]
    pub cols: ColumnArgs,
}

/// Positive pairs of `t` in the model's index space. Items unknown to the model
/// get indices past its catalogue when `keep_unknown_items` (they can only be
/// missed); unknown users are dropped. Returns the matrix and the counts of
/// dropped users' rows and unknown items' rows.
pub fn to_model_space(r: &Ranker, t: &Triplets, keep_unknown_items: bool) -> (Csr, usize, usize) {
    let m = r.model();
    let mut extra = reelkit_ranker::IdMap::new();
    let n_items = m.items.len() as u32;
    let (mut rows, mut cols, mut vals) = (vec![], vec![], vec![]);
    let (mut dropped_users, mut unknown_items) = (0, 0);
    let (users, items) = t.model_ids(r);
    for k in 0..t.user_id.len() {
        let Some(u) = users[k].and_then(|id| m.users.get(id)) else {
            dropped_users += 1;
            continue;
        };
        let i = match items[k].and_then(|id| m.items.get(id)) {
            Some(i) => i,
            None if keep_unknown_items => {
                unknown_items += 1;
                // Unknown items of one file are told apart by their row's id.
                n_items + extra.insert(t.item_id[k])
            }
            None => continue,
        };
        rows.push(u);
        cols.push(i);
        vals.push(t.weight[k]);
    }
    let csr = Csr::from_triplets(
        m.users.len(),
        m.items.len() + extra.len(),
        &rows,
        &cols,
        &vals,
    );
    (csr, dropped_users, unknown_items)
}

/// Model and popularity-baseline metrics.
pub fn model_and_baseline(r: &Ranker, train: &Csr, test: &Csr, k: usize) -> (Metrics, Metrics) {
    let counts: Vec<u32> = r.model().item_counts.to_vec();
    let model = evaluate_embeddings(&r.items(), &r.model().user_factors, train, test, k, &counts);
    (model, evaluate_popularity(train, test, k, &counts))
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.k > 0, "--k must be at least 1");
    let r = Ranker::open(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let (train_t, _) = load_any(&args.train, &args.cols)?;
    let (test_t, _) = load_any(&args.test, &args.cols)?;
    let (train, _, _) = to_model_space(&r, &train_t, false);
    let (test, dropped, unknown) = to_model_space(&r, &test_t, true);
    let (model, baseline) = model_and_baseline(&r, &train, &test, args.k);
    let lift = |a: f64, b: f64| if b > 0.0 { a / b - 1.0 } else { f64::NAN };
    let out = json!({
        "k": args.k,
        "model": model,
        "popularity": baseline,
        "ndcg_lift_over_popularity": lift(model.ndcg, baseline.ndcg),
        "test_rows_of_unknown_users": dropped,
        "test_rows_of_unknown_items": unknown,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
