//! Batch top-K recommendation for a list of users (`reelkit bench recommend`).

use std::time::Instant;

use serde_json::json;

/// Arguments of `reelkit bench recommend`.
#[derive(Debug, clap::Args)]
pub struct RecBenchArgs {
    #[arg(long)]
    model: std::path::PathBuf,
    /// Users to recommend for (column user_id).
    #[arg(long)]
    users: std::path::PathBuf,
    /// Interactions to exclude (user_id, item_id).
    #[arg(long)]
    exclude: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 100)]
    k: usize,
    /// Where candidates are retrieved (as `reelkit recommend --retrieval`).
    #[arg(long, value_enum, default_value_t = reelkit_ranker::Retrieval::default())]
    retrieval: reelkit_ranker::Retrieval,
}

pub(super) fn recommend(args: RecBenchArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let r = reelkit_ranker::Ranker::open(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?
        .with_retrieval(args.retrieval);
    let users = match reelkit_logs::read_ids(&args.users, "user_id", &Default::default())
        .with_context(|| format!("reading users {}", args.users.display()))?
    {
        reelkit_logs::Ids::Numbers(v) => v,
        reelkit_logs::Ids::Strings(_) => anyhow::bail!("bench recommend takes numeric user ids"),
    };
    let m = r.model();
    let mut exclude: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    if let Some(path) = &args.exclude {
        let it = reelkit_logs::read_interactions(path, &Default::default())?;
        for (u, i) in it.user_id.iter().zip(&it.item_id) {
            exclude.entry(*u).or_default().push(*i);
        }
    }
    let d = r.dim();
    let known: Vec<u64> = users
        .iter()
        .copied()
        .filter(|&u| m.users.get(u).is_some())
        .collect();
    // What `reelkit recommend` does, exclusion mapping included.
    let t = Instant::now();
    let mut total = 0usize;
    r.recommend_users(&known, args.k, &exclude, false, None, |_, recs| {
        total += recs.items.len()
    });
    let secs = t.elapsed().as_secs_f64();
    let out = json!({
        "bench": "recommend",
        "retrieval": args.retrieval.as_str(),
        "users": known.len(),
        "k": args.k,
        "items": m.items.len(),
        "dim": d,
        "threads": rayon::current_num_threads(),
        "recommendations": total,
        "seconds": secs,
        "users_per_s": known.len() as f64 / secs,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
