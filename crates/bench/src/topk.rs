//! Exact and approximate top-K retrieval on random data (`reelkit bench topk`).

use anyhow::Context;
use std::time::Instant;

use serde_json::json;

use super::*;

/// Arguments of `reelkit bench topk`.
#[derive(Debug, clap::Args)]
pub struct TopkBenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Queries in the batch.
    #[arg(long, default_value_t = 1_024)]
    queries: usize,
    #[arg(long, default_value_t = 100)]
    k: usize,
    /// Single queries timed for the latency percentiles.
    #[arg(long, default_value_t = 200)]
    single: usize,
    /// Also the f16 table with exact rescoring (recall against exact reported).
    #[arg(long)]
    half: bool,
    /// Also the int8 table (per-vector scales, codes in ±63 for items and queries) with
    /// `--oversample`·k + 64 candidates rescored exactly in f32.
    #[arg(long)]
    int8: bool,
    /// Candidates per wanted result for the approximate paths.
    #[arg(long, default_value_t = 2)]
    oversample: usize,
    #[arg(long, default_value_t = 3)]
    seed: u64,
    /// The drawn vectors: `gaussian` (independent normals, the worst case for
    /// an inverted file) or `clustered` (around `--centres` Gaussian centres
    /// with `--noise`, as trained embeddings group by topic).
    #[arg(long, value_enum, default_value_t = TopkData::Gaussian)]
    data: TopkData,
    /// Centres of the clustered data.
    #[arg(long, default_value_t = 4_096)]
    centres: usize,
    /// Spread of the clustered data around its centres (relative to a centre's norm).
    #[arg(long, default_value_t = 0.35)]
    noise: f64,
    /// Also an approximate index: `ivf` (inverted lists of int8 codes,
    /// candidates rescored exactly).
    #[arg(long, value_enum)]
    index: Option<TopkIndex>,
    /// IVF lists (default 4·√items).
    #[arg(long)]
    nlist: Option<usize>,
    /// IVF lists probed per query, comma-separated: a recall / speed curve.
    /// The nprobe tuned to --target-recall (on separate queries) is measured
    /// as well, and the filtered measurement uses it.
    #[arg(long, value_delimiter = ',')]
    nprobe: Vec<usize>,
    /// The recall@k the tuned nprobe aims at (on queries not measured).
    #[arg(long, default_value_t = 0.95)]
    target_recall: f64,
    /// Also measure the IVF index under filters: an allowed set of this share
    /// of the catalogue (a "surface") and `--exclude` videos per query.
    #[arg(long)]
    filter_share: Option<f64>,
    /// Videos each query excludes in the filtered measurement: half its own
    /// best, half random.
    #[arg(long, default_value_t = 1_000)]
    exclude: usize,
    /// Read the items from a raw little-endian f32 file (items × dim) instead
    /// of drawing them (the peer script's data).
    #[arg(long, requires = "queries_file")]
    items_file: Option<std::path::PathBuf>,
    /// Raw little-endian f32 queries (queries × dim).
    #[arg(long, requires = "items_file")]
    queries_file: Option<std::path::PathBuf>,
    /// Write the exact top-k item indices of every query (little-endian u32,
    /// queries × k, best first) for comparison with a peer.
    #[arg(long)]
    ids_out: Option<std::path::PathBuf>,
}

/// Which vectors `bench topk` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopkData {
    /// Independent normals.
    Gaussian,
    /// Normals around Gaussian centres.
    Clustered,
}

/// Which approximate index `bench topk` also measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopkIndex {
    /// Inverted file with int8 lists.
    Ivf,
}

/// Seconds for `matrixmultiply`'s sgemm to compute every query × item score
/// (into a reused buffer, a block of items per task so it stays in memory
/// bounds), the work split over the rayon threads.
pub(super) fn sgemm_all_scores(queries: &[Vec<f32>], items: &[f32], dim: usize) -> f64 {
    use rayon::prelude::*;
    const BLOCK: usize = 8_192;
    let q: Vec<f32> = queries.iter().flatten().copied().collect();
    let m = queries.len();
    let n = items.len() / dim;
    let t = Instant::now();
    (0..n.div_ceil(BLOCK)).into_par_iter().for_each_init(
        || vec![0f32; m * BLOCK],
        |c, b| {
            let (lo, hi) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
            let cols = hi - lo;
            // SAFETY: A is m × dim (row stride dim), B is dim × cols read
            // from row-major items (column stride dim), C is m × cols
            // (row stride cols) inside a buffer of m × BLOCK floats.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    dim,
                    cols,
                    1.0,
                    q.as_ptr(),
                    dim as isize,
                    1,
                    items[lo * dim..].as_ptr(),
                    1,
                    dim as isize,
                    0.0,
                    c.as_mut_ptr(),
                    cols as isize,
                    1,
                )
            };
            std::hint::black_box(&c[..]);
        },
    );
    t.elapsed().as_secs_f64()
}

pub(super) fn topk(args: TopkBenchArgs) -> anyhow::Result<()> {
    use reelkit_ranker::retrieval::{recall, HalfTable, Isa, ItemTable};
    anyhow::ensure!(
        args.items > 0 && args.dim > 0 && args.queries > 0,
        "empty benchmark"
    );
    reelkit_lab::limits::ensure_fits(
        &format!("--items {} × --dim {}", args.items, args.dim),
        // The f32 table, its reduced copies and the index: about twice it.
        args.items as f64 * args.dim as f64 * 4.0 * 2.0,
    )?;
    // Measured queries, and queries that tune nprobe (never measured): drawn
    // from the same distribution, or (with files) a seeded sample of items.
    let (items, queries, tuning): (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>) =
        match (&args.items_file, &args.queries_file) {
            (Some(i), Some(q)) => {
                let items = read_f32s(i, args.dim)?;
                let mut rng = reelkit_sim::random::Rng::new(args.seed);
                let n = items.len() / args.dim;
                let tuning = (0..512)
                    .map(|_| {
                        let r = rng.below(n as u64) as usize;
                        items[r * args.dim..(r + 1) * args.dim].to_vec()
                    })
                    .collect();
                let queries = read_f32s(q, args.dim)?
                    .chunks(args.dim)
                    .map(<[f32]>::to_vec)
                    .collect();
                (items, queries, tuning)
            }
            _ => {
                let mut rng = reelkit_sim::random::Rng::new(args.seed);
                let centres = match args.data {
                    TopkData::Gaussian => Vec::new(),
                    TopkData::Clustered => {
                        draw_vectors(&mut rng, args.centres.max(1), args.dim, &[], 1.0)
                    }
                };
                let items = draw_vectors(&mut rng, args.items, args.dim, &centres, args.noise);
                let queries = draw_vectors(&mut rng, args.queries, args.dim, &centres, args.noise);
                let tuning = draw_vectors(&mut rng, 512, args.dim, &centres, args.noise);
                let rows = |v: Vec<f32>| v.chunks(args.dim).map(<[f32]>::to_vec).collect();
                (items, rows(queries), rows(tuning))
            }
        };
    let args = TopkBenchArgs {
        items: items.len() / args.dim,
        queries: queries.len(),
        ..args
    };
    // Where a Ranker with IVF retrieval keeps its table: in 2 MiB pages.
    let items = {
        let owned = items;
        reelkit_ranker::retrieval::in_huge_pages(&owned)
    };
    let table = ItemTable::new(args.dim, &items, None);
    let bytes = (items.len() * 4) as f64;
    // Baseline: a plain parallel streaming read (sum) of the same bytes.
    let stream = || -> f64 {
        use rayon::prelude::*;
        let t = Instant::now();
        // XOR of the bit patterns: associative, so it vectorises and the read
        // is bound by memory, not by a floating-point dependency chain.
        let s: u32 = items
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u32, |a, x| a ^ x.to_bits()))
            .reduce(|| 0, |a, b| a ^ b);
        std::hint::black_box(s);
        t.elapsed().as_secs_f64()
    };
    stream();
    let stream_s = (0..5).map(|_| stream()).fold(f64::INFINITY, f64::min);
    // Baseline: the machine's sgemm on the same product (queries × items,
    // every score written out, no selection), both cores, best of three.
    let sgemm_s = (0..3)
        .map(|_| sgemm_all_scores(&queries, &items, args.dim))
        .fold(f64::INFINITY, f64::min);
    let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
    let ks = vec![args.k; qs.len()];
    let ex: Vec<&[u32]> = vec![&[]; qs.len()];
    let t = Instant::now();
    let exact = table.top_k_batch(&qs, &ks, &ex);
    let batch_s = t.elapsed().as_secs_f64();
    // Single queries alternate with streaming reads of the same bytes, so
    // both see the same machine; the ratio compares their medians.
    let (mut lat, mut reads): (Vec<f64>, Vec<f64>) = (0..args.single)
        .map(|i| {
            let t = Instant::now();
            std::hint::black_box(table.top_k_parallel(qs[i % qs.len()], args.k, &[]));
            (t.elapsed().as_secs_f64(), stream())
        })
        .unzip();
    lat.sort_by(f64::total_cmp);
    reads.sort_by(f64::total_cmp);
    let pct = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize] * 1e3;
    if let Some(path) = &args.ids_out {
        let mut out = Vec::with_capacity(exact.len() * args.k * 4);
        for r in &exact {
            for s in r {
                out.extend_from_slice(&s.item.to_le_bytes());
            }
        }
        reelkit_logs::files::write_bytes_atomically(path, &out)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let flops = 2.0 * args.items as f64 * args.dim as f64;
    let mut report = json!({
        "bench": "topk",
        "items": args.items,
        "dim": args.dim,
        "queries": args.queries,
        "k": args.k,
        "threads": rayon::current_num_threads(),
        "kernel": Isa::detect().name(),
        "stream_read_gb_s": bytes / stream_s / 1e9,
        "sgemm_gflop_s": flops * args.queries as f64 / sgemm_s / 1e9,
        "exact_f32": {
            "batch_queries_per_s": args.queries as f64 / batch_s,
            "batch_gflop_s": flops * args.queries as f64 / batch_s / 1e9,
            "batch_vs_sgemm": sgemm_s / batch_s,
            "single_p50_ms": pct(&lat, 0.5),
            "single_p99_ms": pct(&lat, 0.99),
            "single_gb_s": bytes / (pct(&lat, 0.5) / 1e3) / 1e9,
            "stream_read_p50_ms": pct(&reads, 0.5),
            "single_bandwidth_vs_stream": pct(&reads, 0.5) / pct(&lat, 0.5),
            "single_best_vs_stream_best": reads[0] / lat[0],
        },
    });
    if args.half {
        let h = HalfTable::new(args.dim, &items, None);
        let pool = (4 * args.k + 64).min(args.items);
        let pools = vec![pool; qs.len()];
        let t = Instant::now();
        let cands = h.top_k_batch(&qs, &pools, &ex);
        let rescored: Vec<Vec<reelkit_ranker::retrieval::Scored>> = cands
            .iter()
            .zip(&qs)
            .map(|(c, q)| table.rescore(q, args.k, c))
            .collect();
        let half_s = t.elapsed().as_secs_f64();
        let mut hlat: Vec<f64> = (0..args.single)
            .map(|i| {
                let q = qs[i % qs.len()];
                let t = Instant::now();
                let c = h.top_k_batch(&[q], &[pool], &[&[]]);
                std::hint::black_box(table.rescore(q, args.k, &c[0]));
                t.elapsed().as_secs_f64()
            })
            .collect();
        hlat.sort_by(f64::total_cmp);
        report["f16_rescored"] = json!({
            "single_p50_ms": pct(&hlat, 0.5),
            "single_p99_ms": pct(&hlat, 0.99),
            "batch_queries_per_s": args.queries as f64 / half_s,
            "speedup_vs_exact_batch": batch_s / half_s,
            "recall_at_k": recall(&rescored, &exact),
        });
    }
    if args.int8 {
        let t = Instant::now();
        let q8 = reelkit_ranker::retrieval::Int8Table::new(args.dim, &items, None);
        let build_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let found = q8.search(&table, &qs, &ks, &ex, args.oversample);
        let int8_s = t.elapsed().as_secs_f64();
        let mut lat: Vec<f64> = (0..args.single)
            .map(|i| {
                let q = qs[i % qs.len()];
                let t = Instant::now();
                std::hint::black_box(q8.search(&table, &[q], &[args.k], &[&[]], args.oversample));
                t.elapsed().as_secs_f64()
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        report["int8_rescored"] = json!({
            "oversample": args.oversample,
            "build_s": build_s,
            "table_mb": q8.bytes() as f64 / 1e6,
            "batch_queries_per_s": args.queries as f64 / int8_s,
            "speedup_vs_exact_batch": batch_s / int8_s,
            "single_p50_ms": pct(&lat, 0.5),
            "single_p99_ms": pct(&lat, 0.99),
            "recall_at_k": recall(&found, &exact),
        });
    }
    if let Some(TopkIndex::Ivf) = args.index {
        report["ivf"] = ivf_bench(&args, &table, &qs, &tuning, &exact, batch_s)?;
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The IVF part of `bench topk`: build, nprobe (tuned or given), recall@k
/// against `exact`, batch and single-query speed, memory; with
/// `--filter-share`, the same under a surface filter and exclusions.
pub(super) fn ivf_bench(
    args: &TopkBenchArgs,
    table: &reelkit_ranker::retrieval::ItemTable<'_>,
    qs: &[&[f32]],
    tuning: &[Vec<f32>],
    exact: &[Vec<reelkit_ranker::retrieval::Scored>],
    exact_batch_s: f64,
) -> anyhow::Result<serde_json::Value> {
    use reelkit_ranker::retrieval::{recall, IvfIndex, IvfParams, IvfQuery};
    if let Some(share) = args.filter_share {
        anyhow::ensure!(
            share > 0.0 && share <= 1.0,
            "--filter-share must be in (0, 1], got {share}"
        );
    }
    let t = Instant::now();
    let mut index = IvfIndex::build(
        table,
        &IvfParams {
            nlist: args.nlist,
            seed: args.seed,
            ..IvfParams::default()
        },
    )?;
    let build_s = t.elapsed().as_secs_f64();
    // What `Int8Table::bytes` counts for the whole table: codes in whole
    // panels of sixteen, a scale and a sum per item.
    let int8_bytes = (args.items.div_ceil(16) * 16 * (args.dim.div_ceil(4) * 4 + 8)) as f64;
    let pct = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize] * 1e3;
    let plain: Vec<IvfQuery<'_>> = qs
        .iter()
        .map(|v| IvfQuery {
            vector: v,
            k: args.k,
            exclude: &[],
            filter: None,
        })
        .collect();
    // Batch (best of two after a warm-up) and single-query timings of the
    // index as it is set.
    let measure = |index: &IvfIndex| -> anyhow::Result<serde_json::Value> {
        let mut batch_s = f64::INFINITY;
        let mut found = index.search(table, &plain)?;
        for _ in 0..2 {
            let t = Instant::now();
            found = index.search(table, &plain)?;
            batch_s = batch_s.min(t.elapsed().as_secs_f64());
        }
        let mut lat: Vec<f64> = (0..args.single)
            .map(|i| {
                let t = Instant::now();
                let r = index.search_one(table, &plain[i % plain.len()]);
                std::hint::black_box(r.ok());
                t.elapsed().as_secs_f64()
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        Ok(json!({
            "nprobe": index.nprobe(),
            "recall_at_k": recall(&found, exact),
            "batch_queries_per_s": qs.len() as f64 / batch_s,
            "speedup_vs_exact_batch": exact_batch_s / batch_s,
            "single_p50_ms": pct(&lat, 0.5),
            "single_p99_ms": pct(&lat, 0.99),
        }))
    };
    // The nprobe, probe order and depth tables tuned to --target-recall on
    // the tuning queries, measured; then the curve over the given nprobes in
    // the tuned order.
    let sample: Vec<&[f32]> = tuning.iter().map(Vec::as_slice).collect();
    let t = Instant::now();
    let (n, r) = index.tune_nprobe(table, &sample, args.k, args.target_recall)?;
    let tune_s = t.elapsed().as_secs_f64();
    let mut tuned = measure(&index)?;
    tuned["tuning"] = json!({"nprobe": n, "order": index.probe_order(), "tuning_recall_lower_bound": r, "tuning_queries": sample.len(), "seconds": tune_s});
    // The index file (what `reelkit index` writes and serve loads): save,
    // load back, and check the loaded index answers exactly as the built one.
    let file = std::env::temp_dir().join(format!(".reelkit-bench-{}.ivf", std::process::id()));
    let t = Instant::now();
    index.save(&file)?;
    let save_s = t.elapsed().as_secs_f64();
    let file_mb = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let t = Instant::now();
    let loaded = IvfIndex::load(&file, table);
    let load_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    let loaded = loaded?;
    anyhow::ensure!(
        loaded.search(table, &plain)? == index.search(table, &plain)?,
        "the loaded index answers differently from the built one"
    );
    drop(loaded);
    let mut out = json!({
        "nlist": index.nlist(),
        "kernel": index.kernel_name(),
        "build_s": build_s,
        "index_mb": index.bytes() as f64 / 1e6,
        "int8_table_mb": int8_bytes / 1e6,
        "index_vs_int8_table": index.bytes() as f64 / int8_bytes,
        "imbalance": index.imbalance(),
        "file": {"mb": file_mb, "save_s": save_s, "load_s": load_s,
                 "build_and_tune_over_load": (build_s + tune_s) / load_s},
        "tuned": tuned,
    });
    if let Some(share) = args.filter_share {
        let keep = |i: u32| {
            ((reelkit_sim::random::splitmix64(i as u64 ^ 0x5eed) >> 11) as f64
                / (1u64 << 53) as f64)
                < share
        };
        let filter = index.filter(keep);
        // Exclusions: half the query's own best (as seen videos are), half random.
        let own = table.top_k_batch(
            qs,
            &vec![args.exclude / 2; qs.len()],
            &vec![&[][..]; qs.len()],
        );
        let mut rng = reelkit_sim::random::Rng::new(args.seed ^ 0xe8c1);
        let excludes: Vec<Vec<u32>> = own
            .iter()
            .map(|o| {
                let mut e: Vec<u32> = o.iter().map(|s| s.item).collect();
                e.extend(
                    (0..args.exclude - args.exclude / 2)
                        .map(|_| rng.below(args.items as u64) as u32),
                );
                e.sort_unstable();
                e.dedup();
                e
            })
            .collect();
        // The truth: the exact top-k of the allowed items, exclusions mapped
        // into that sub-table.
        let allowed: Vec<u32> = (0..args.items as u32).filter(|&i| keep(i)).collect();
        let f = args.dim;
        let sub: Vec<f32> = allowed
            .iter()
            .flat_map(|&i| {
                table.factors()[i as usize * f..(i as usize + 1) * f]
                    .iter()
                    .copied()
            })
            .collect();
        let sub_table = reelkit_ranker::retrieval::ItemTable::new(f, &sub, None);
        let sub_ex: Vec<Vec<u32>> = excludes
            .iter()
            .map(|e| {
                e.iter()
                    .filter_map(|i| allowed.binary_search(i).ok().map(|p| p as u32))
                    .collect()
            })
            .collect();
        let sub_ex_refs: Vec<&[u32]> = sub_ex.iter().map(Vec::as_slice).collect();
        let truth: Vec<Vec<reelkit_ranker::retrieval::Scored>> = sub_table
            .top_k_batch(qs, &vec![args.k; qs.len()], &sub_ex_refs)
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|s| reelkit_ranker::retrieval::Scored {
                        item: allowed[s.item as usize],
                        score: s.score,
                    })
                    .collect()
            })
            .collect();
        let filtered: Vec<IvfQuery<'_>> = qs
            .iter()
            .zip(&excludes)
            .map(|(v, e)| IvfQuery {
                vector: v,
                k: args.k,
                exclude: e,
                filter: Some(&filter),
            })
            .collect();
        let t = Instant::now();
        let found = index.search(table, &filtered)?;
        let batch_s = t.elapsed().as_secs_f64();
        let violations = found
            .iter()
            .zip(&excludes)
            .map(|(r, e)| {
                r.iter()
                    .filter(|s| !keep(s.item) || e.binary_search(&s.item).is_ok())
                    .count()
            })
            .sum::<usize>();
        let mut lat: Vec<f64> = (0..args.single)
            .map(|i| {
                let t = Instant::now();
                std::hint::black_box(index.search_one(table, &filtered[i % filtered.len()]).ok());
                t.elapsed().as_secs_f64()
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        out["filtered"] = json!({
            "allowed_share": filter.allowed() as f64 / args.items as f64,
            "excluded_per_query": excludes.iter().map(Vec::len).sum::<usize>() as f64 / excludes.len().max(1) as f64,
            "nprobe": index.nprobe(),
            "recall_at_k": recall(&found, &truth),
            "results_violating_the_filter": violations,
            "batch_queries_per_s": qs.len() as f64 / batch_s,
            "single_p50_ms": pct(&lat, 0.5),
            "single_p99_ms": pct(&lat, 0.99),
        });
    }
    // Last: setting nprobe forgets the tuned depth tables the filter used.
    let mut curve = Vec::new();
    for &np in &args.nprobe {
        index.set_nprobe(np);
        curve.push(measure(&index)?);
    }
    out["curve"] = json!(curve);
    Ok(out)
}
