//! Opening a model file: read against memory-mapped (`reelkit bench load`).

use std::time::Instant;

use serde_json::json;

use super::*;

/// Arguments of `reelkit bench load`.
#[derive(Debug, clap::Args)]
pub struct LoadBenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Opens of each kind (alternating).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Directory for the model file (default: the system's temporary one).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub(super) fn load(args: LoadBenchArgs) -> anyhow::Result<()> {
    use reelkit_ranker::{Factors, IdMap, MappedModel, Model, ModelMeta};
    anyhow::ensure!(args.items > 0 && args.dim > 0, "empty model");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let dir = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let path = dir.path().join("model.arrow");
    {
        let mut rng = reelkit_sim::random::Rng::new(args.seed);
        let n = args.items * args.dim;
        let items: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Model {
            users: IdMap::from_ids(vec![1]),
            items: IdMap::from_ids((0..args.items as u64).collect()),
            factors: Factors {
                dim: args.dim,
                users: vec![0.5; args.dim],
                items,
                item_bias: vec![0.0; args.items],
            },
            user_counts: vec![1],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1; args.items],
            meta: ModelMeta::default(),
        }
        .save(&path)?;
    }
    let bytes = std::fs::metadata(&path)?.len();
    let (mut read_s, mut map_s) = (Vec::new(), Vec::new());
    let (mut read_anon, mut map_file) = (0.0f64, 0.0f64);
    for _ in 0..args.rounds {
        // The mapped open: the same validation and hash over a memory map.
        let before = rss_parts_mib().unwrap_or_default();
        let t = Instant::now();
        // SAFETY: a private temporary file nothing else writes while mapped.
        let m = unsafe { MappedModel::map(&path) }?;
        map_s.push(t.elapsed().as_secs_f64());
        let after = rss_parts_mib().unwrap_or_default();
        map_file = map_file.max(after.1 - before.1);
        std::hint::black_box(m.content_hash);
        drop(m);
        // reelkit's open: read into an aligned buffer, validate, hash.
        let before = rss_parts_mib().unwrap_or_default();
        let t = Instant::now();
        let m = MappedModel::open(&path)?;
        read_s.push(t.elapsed().as_secs_f64());
        let after = rss_parts_mib().unwrap_or_default();
        read_anon = read_anon.max(after.0 - before.0);
        std::hint::black_box(m.content_hash);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (read, map) = (median(&mut read_s), median(&mut map_s));
    let out = json!({
        "bench": "load",
        "items": args.items,
        "dim": args.dim,
        "file_mib": bytes as f64 / (1 << 20) as f64,
        "rounds": args.rounds,
        "open_read_s": read,
        "baseline_map_s": map,
        "open_vs_mmap": read / map,
        "open_read_gb_s": bytes as f64 / read / 1e9,
        "open_anon_rss_mib": read_anon,
        "mmap_file_rss_mib": map_file,
        "note": "both with the file in the page cache; the read copy is private memory, the map's pages are the cache's and go with the file",
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
