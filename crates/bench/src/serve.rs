//! HTTP serving on loopback: throughput, then latency at a share of it (`reelkit bench serve`).

use anyhow::Context;

use super::topk::TopkData;
use super::*;

/// Arguments of `reelkit bench serve`.
#[derive(Debug, clap::Args)]
pub struct ServeBenchArgs {
    /// Videos in the random model.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Users in the random model (requests cycle through them).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Concurrent keep-alive connections of the load generator (enough that the
    /// open-loop phase does not queue behind its own connections).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests per connection in each phase.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Open-loop rate as a share of the measured maximum.
    #[arg(long, default_value_t = 0.5)]
    load_share: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where candidates are retrieved (as `reelkit serve --retrieval`).
    #[arg(long, value_enum, default_value_t = reelkit_ranker::Retrieval::default())]
    retrieval: reelkit_ranker::Retrieval,
    /// The random model's vectors (users and videos alike): `gaussian` or
    /// `clustered` (as `bench topk`; trained embeddings group by taste).
    #[arg(long, value_enum, default_value_t = TopkData::Gaussian)]
    data: TopkData,
    /// Centres of the clustered data.
    #[arg(long, default_value_t = 20_000)]
    centres: usize,
    /// Spread of the clustered data around its centres.
    #[arg(long, default_value_t = 0.35)]
    noise: f64,
    /// Batch workers scanning alone (0: one worker across all threads).
    #[arg(long, default_value_t = 0)]
    scan_workers: usize,
    /// Also measure champion/challenger serving in the same run: two models
    /// interleaved by team draft, every response written to an exposure log,
    /// and each model hot-reloaded over and over during the open-loop phase.
    #[arg(long)]
    interleave: bool,
}

pub(super) fn serve(args: ServeBenchArgs) -> anyhow::Result<()> {
    use reelkit_ranker::{Factors, IdMap, Model, ModelMeta, Ranker, TrainParams};
    anyhow::ensure!(
        args.items > 0 && args.users > 0 && args.dim > 0,
        "empty model"
    );
    reelkit_lab::limits::ensure_fits(
        &format!(
            "--items {} and --users {} × --dim {}",
            args.items, args.users, args.dim
        ),
        (args.items + args.users) as f64 * args.dim as f64 * 4.0 * 3.0,
    )?;
    anyhow::ensure!(
        args.load_share > 0.0 && args.load_share <= 1.0,
        "--load-share must be in (0, 1]"
    );
    let mut rng = reelkit_sim::random::Rng::new(args.seed);
    let centres = match args.data {
        TopkData::Gaussian => Vec::new(),
        TopkData::Clustered => draw_vectors(&mut rng, args.centres.max(1), args.dim, &[], 1.0),
    };
    // `n` values: `n / dim` vectors.
    let mut gauss = |n: usize| -> Vec<f32> {
        draw_vectors(&mut rng, n / args.dim, args.dim, &centres, args.noise)
    };
    let model = Model {
        users: IdMap::from_ids((0..args.users as u64).map(|u| 1_000_000 + u).collect()),
        items: IdMap::from_ids((0..args.items as u64).collect()),
        factors: Factors {
            dim: args.dim,
            users: gauss(args.users * args.dim),
            items: gauss(args.items * args.dim),
            item_bias: vec![0.0; args.items],
        },
        user_counts: vec![1; args.users],
        surfaces: None,
        user_keys: None,
        item_keys: None,
        item_counts: vec![1; args.items],
        meta: ModelMeta {
            params: TrainParams {
                factors: args.dim,
                ..TrainParams::default()
            },
            fingerprint: "bench".into(),
            value_model: None,
            source: "reelkit bench serve".into(),
            specific: None,
            item_specific: None,
        },
    };
    let config = reelkit_serve::ServeConfig {
        retrieval: args.retrieval,
        scan_workers: args.scan_workers,
        ..reelkit_serve::ServeConfig::default()
    };
    let bodies: Vec<Vec<u8>> = (0..args.users.min(10_000))
        .map(|u| {
            serde_json::to_vec(&serde_json::json!({"user_id": 1_000_000 + u as u64, "k": args.k}))
                .unwrap_or_default()
        })
        .collect();
    let second = args.interleave.then(|| {
        let mut m = model.clone();
        m.factors.items = gauss(args.items * args.dim);
        m
    });
    let state = std::sync::Arc::new(reelkit_serve::AppState::from_ranker(
        Ranker::from_model(model.clone()),
        "bench",
        config.clone(),
    ));
    let single = serve_phases(state, &bodies, &args, None)?;
    let mut report = serde_json::json!({
        "bench": "serve",
        "items": args.items,
        "dim": args.dim,
        "k": args.k,
        "threads": rayon::current_num_threads(),
        "closed_loop_max": single.max,
        "open_loop_at_share": single.at_share,
        "load_share": args.load_share,
        "retrieval": args.retrieval.as_str(),
        "data": format!("{:?}", args.data),
        "p99_ms_at_share": single.at_share.p99_ms,
        "max_throughput_rps": single.max.throughput_rps,
    });
    if let Some(b) = second {
        let dir = tempfile::tempdir()?;
        let paths = [
            dir.path().join("control.arrow"),
            dir.path().join("treatment.arrow"),
        ];
        model.save(&paths[0])?;
        b.save(&paths[1])?;
        let models = vec![
            ("control".to_string(), paths[0].clone()),
            ("treatment".to_string(), paths[1].clone()),
        ];
        let log = reelkit_serve::ExposureLog::open(reelkit_serve::ExposureConfig::new(
            dir.path().join("exposures"),
        ))?;
        let state = std::sync::Arc::new(
            reelkit_serve::AppState::open_models(
                &models,
                reelkit_serve::Design::Interleave {
                    salt: "bench".into(),
                },
                None,
                config,
            )?
            .with_exposures(log)?,
        );
        let mixed = serve_phases(
            state.clone(),
            &bodies,
            &args,
            Some(&["control", "treatment"]),
        )?;
        let log = state.exposures().context("the exposure log")?;
        let rows = reelkit_abtest::exposure::read_exposures(&dir.path().join("exposures"))?.len();
        report["interleave"] = serde_json::json!({
            "closed_loop_max": mixed.max,
            "open_loop_at_share": mixed.at_share,
            "p99_ms_at_share": mixed.at_share.p99_ms,
            "p99_ratio_vs_single": mixed.at_share.p99_ms / single.at_share.p99_ms,
            "max_throughput_ratio_vs_single": mixed.max.throughput_rps / single.max.throughput_rps,
            "requests_sent": mixed.sent,
            "exposure_rows": rows,
            "exposures_dropped": log.dropped(),
            "exposure_files": log.files(),
            "open_loop_under_reloads": mixed.under_reloads,
            "reloads_during_open_loop": mixed.reloads,
            "reload_failures": mixed.reload_failures,
            "failed_requests": mixed.max.errors
                + mixed.at_share.errors
                + mixed.under_reloads.as_ref().map_or(0, |r| r.errors),
        });
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// What one served configuration measured.
pub(super) struct Phases {
    max: reelkit_serve::client::LoadReport,
    at_share: reelkit_serve::client::LoadReport,
    /// The open-loop phase again while the models are reloaded in turn.
    under_reloads: Option<reelkit_serve::client::LoadReport>,
    /// Requests sent in all phases (warm-up included).
    sent: usize,
    reloads: usize,
    reload_failures: usize,
}

/// Serves `state` on loopback, warms up, measures the closed-loop maximum,
/// then the open-loop phase at `load_share` of it (reloading each of
/// `reload` models in turn meanwhile), and shuts the server down (the
/// exposure log, if any, is closed when this returns).
pub(super) fn serve_phases(
    state: std::sync::Arc<reelkit_serve::AppState>,
    bodies: &[Vec<u8>],
    args: &ServeBenchArgs,
    reload: Option<&[&str]>,
) -> anyhow::Result<Phases> {
    use reelkit_serve::client::load;
    let server = reelkit_serve::client::LocalServer::start(state)?;
    let (addr, admin_addr) = (server.addr, server.admin_addr);

    // Warm up (page in the model, start the blocking pool).
    let warm = load(addr, "/v1/recommend", bodies, args.connections, 200, None)?;
    let max = load(
        addr,
        "/v1/recommend",
        bodies,
        args.connections,
        args.requests,
        None,
    )?;
    let rate = max.throughput_rps * args.load_share;
    let at_share = load(
        addr,
        "/v1/recommend",
        bodies,
        args.connections,
        args.requests,
        Some(rate),
    )?;
    // Then the same open-loop load while each model is reloaded in turn.
    let mut under_reloads = None;
    let (mut reloads, mut reload_failures) = (0, 0);
    if let Some(names) = reload {
        let done = std::sync::atomic::AtomicBool::new(false);
        let (r, (n, failed)) = std::thread::scope(|scope| {
            let reloader = scope.spawn(|| -> anyhow::Result<(usize, usize)> {
                let mut c = reelkit_serve::client::Client::connect(admin_addr)?;
                let (mut n, mut failed) = (0, 0);
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = names[n % names.len()];
                    let r = c.send("POST", &format!("/admin/reload?model={name}"), None)?;
                    n += 1;
                    if r.status != 200 {
                        failed += 1;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                Ok((n, failed))
            });
            let r = load(
                addr,
                "/v1/recommend",
                bodies,
                args.connections,
                args.requests,
                Some(rate),
            );
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let counts = reloader
                .join()
                .map_err(|_| anyhow::anyhow!("the reload thread panicked"))?;
            anyhow::Ok((r?, counts?))
        })?;
        under_reloads = Some(r);
        reloads = n;
        reload_failures = failed;
    }
    server.stop()?;
    Ok(Phases {
        sent: warm.requests
            + max.requests
            + at_share.requests
            + under_reloads.as_ref().map_or(0, |r| r.requests),
        max,
        at_share,
        under_reloads,
        reloads,
        reload_failures,
    })
}
