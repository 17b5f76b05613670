//! `reelkit serve`: the model behind HTTP (see reelkit-serve).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use reelkit_serve::{
    Allocation, AppState, Catalog, Design, ExposureConfig, ExposureLog, ServeConfig,
};

/// Arguments of `reelkit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Model file (read into memory: overwriting it changes nothing until a
    /// reload; reloaded by POST /admin/reload on --admin-addr, or SIGHUP),
    /// or NAME=PATH; repeat it (`--model control=a.arrow --model
    /// treatment=b.arrow`) to run an experiment between models.
    #[arg(long, required = true)]
    model: Vec<String>,
    /// With two or more models: `ab` serves each user by their arm's model,
    /// `interleave` merges the first two models' lists by team draft.
    #[arg(long, value_enum)]
    experiment: Option<ExperimentArg>,
    /// A/B arms and their shares, each named after a model, e.g.
    /// control=0.5,treatment=0.5 (default: equal shares of every model).
    #[arg(long)]
    arms: Option<String>,
    /// The experiment's salt: the same salt gives the same arms here, in
    /// `reelkit ab assign` and in the simulator.
    #[arg(long, default_value = "reelkit")]
    salt: String,
    /// Append every recommendation served to Parquet files in this directory
    /// (read by `reelkit ab analyze --exposures` and `reelkit ab interleave`).
    #[arg(long)]
    exposures: Option<PathBuf>,
    /// Close an exposure file and start another past this size, MiB.
    #[arg(long, default_value_t = 64)]
    exposure_file_mb: u64,
    /// … or after this many seconds (at most this much is lost in a crash).
    #[arg(long, default_value_t = 60)]
    exposure_rotate_secs: u64,
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Where the admin routes (`POST /admin/reload`) listen: loopback, one
    /// port above --addr's, unless given. They are never on --addr.
    #[arg(long)]
    admin_addr: Option<String>,
    /// Connections open at once; past it a new one gets a 503 and is closed.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// A connection must send a request head within this time, and one idle
    /// between requests is closed after it; request bodies get as long.
    #[arg(long, default_value_t = 10_000)]
    client_timeout_ms: u64,
    /// On SIGTERM or Ctrl-C, requests already accepted get this long to finish.
    #[arg(long, default_value_t = 30)]
    shutdown_grace_secs: u64,
    /// A file holding a token that admin requests must present as
    /// `Authorization: Bearer TOKEN` (the file's first line).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Allow a non-loopback --admin-addr without --admin-token-file.
    #[arg(long)]
    admin_insecure: bool,
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
    #[arg(long, value_enum, default_value_t = reelkit_ranker::Retrieval::default())]
    retrieval: reelkit_ranker::Retrieval,
    /// Explore: each slot of every list, with this probability in (0, 1),
    /// shows a video drawn uniformly from those the request could have been
    /// shown (its surface's, not excluded, not already listed); each video's
    /// probability at its position is in the response (`propensity`) and
    /// the exposure log (`propensities`), for off-policy evaluation. Not
    /// with --experiment interleave.
    #[arg(long)]
    explore: Option<f64>,
    /// Seed of the exploration's draws (mixed with each request's user and
    /// id): the same seed and request give the same list.
    #[arg(long, default_value_t = 0, requires = "explore")]
    explore_seed: u64,
}

/// `--experiment` values.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum ExperimentArg {
    Ab,
    Interleave,
}

/// `--model` values as (name, path): `NAME=PATH`, or a bare path named `default`.
fn named_models(args: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let models: Vec<(String, PathBuf)> = args
        .iter()
        .map(|a| match a.split_once('=') {
            Some((name, path)) if !name.contains(['/', '\\']) => {
                anyhow::ensure!(!name.is_empty(), "--model {a}: the model name before `=` is empty");
                Ok((name.to_string(), PathBuf::from(path)))
            }
            _ if args.len() > 1 => anyhow::bail!(
                "--model {a}: with several models, give each a name (NAME=PATH, e.g. control=a.arrow)"
            ),
            _ => Ok(("default".to_string(), PathBuf::from(a))),
        })
        .collect::<anyhow::Result<_>>()?;
    for (i, (name, _)) in models.iter().enumerate() {
        anyhow::ensure!(
            !models[..i].iter().any(|m| &m.0 == name),
            "--model: model `{name}` is given twice; give each model a distinct name (NAME=PATH)"
        );
    }
    Ok(models)
}

/// The experiment design the arguments ask for.
fn design(args: &ServeArgs, models: &[(String, PathBuf)]) -> anyhow::Result<Design> {
    let kind = match (args.experiment, models.len()) {
        (None, 1) => None,
        (Some(_), 1) => anyhow::bail!("--experiment needs two or more --model NAME=PATH"),
        (None, _) => Some(ExperimentArg::Ab),
        (Some(k), _) => Some(k),
    };
    match kind {
        None => {
            anyhow::ensure!(
                args.arms.is_none(),
                "--arms needs two or more --model NAME=PATH"
            );
            Ok(Design::Single)
        }
        Some(ExperimentArg::Ab) => {
            let split = match &args.arms {
                Some(a) => Allocation::parse(a).with_context(|| format!("--arms {a}"))?,
                None => {
                    let names: Vec<String> = models.iter().map(|m| m.0.clone()).collect();
                    let w = vec![1.0 / names.len() as f64; names.len()];
                    Allocation::new(&names, &w)?
                }
            };
            Ok(Design::Ab {
                split,
                salt: args.salt.clone(),
            })
        }
        Some(ExperimentArg::Interleave) => {
            anyhow::ensure!(
                args.arms.is_none(),
                "--arms splits users between models (ab); interleaving shows both models to every user"
            );
            Ok(Design::Interleave {
                salt: args.salt.clone(),
            })
        }
    }
}

/// Reads a catalogue file: `video_id`, `creator_id`, `format`.
fn read_catalog(path: &std::path::Path) -> anyhow::Result<Catalog> {
    let v = reelkit_lab::offpolicy::Videos::read(path)?;
    Ok(Catalog {
        video_id: v.video_id,
        creator_id: v.creator_id,
        long: v.long,
    })
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let models = named_models(&args.model)?;
    let design = design(&args, &models)?;
    let catalog = args.videos.as_deref().map(read_catalog).transpose()?;
    let admin_token = match &args.admin_token_file {
        Some(p) => {
            let text = reelkit_logs::files::read_text_capped(p, reelkit_logs::files::TEXT_CAP)
                .with_context(|| format!("reading --admin-token-file {}", p.display()))?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            anyhow::ensure!(
                token.len() >= 16,
                "--admin-token-file {}: the token must be at least 16 characters on the first line",
                p.display()
            );
            Some(token)
        }
        None => None,
    };
    anyhow::ensure!(
        args.max_connections > 0,
        "--max-connections must be at least 1"
    );
    anyhow::ensure!(
        args.max_k > 0,
        "--max-k must be at least 1 (a server that refuses every k)"
    );
    anyhow::ensure!(
        args.max_body_bytes >= 64,
        "--max-body-bytes must be at least 64 (the smallest request body), got {}",
        args.max_body_bytes
    );
    if let Some(a) = &args.admin_addr {
        let loopback = a
            .parse::<std::net::SocketAddr>()
            .map(|s| s.ip().is_loopback())
            .unwrap_or_else(|_| a.starts_with("localhost:"));
        anyhow::ensure!(
            loopback || args.admin_token_file.is_some() || args.admin_insecure,
            "--admin-addr {a} is not a loopback address: anyone who reaches it could reload \
             models. Give --admin-token-file, or --admin-insecure to accept that"
        );
    }
    anyhow::ensure!(
        args.client_timeout_ms > 0,
        "--client-timeout-ms must be at least 1"
    );
    if let Some(e) = args.explore {
        anyhow::ensure!(
            e > 0.0 && e < 1.0,
            "--explore {e}: the share of slots explored must be in (0, 1)"
        );
        anyhow::ensure!(
            args.experiment != Some(ExperimentArg::Interleave),
            "--explore with --experiment interleave: an interleaved list's propensities are not \
             logged; explore under one model or an A/B test"
        );
    }
    let config = ServeConfig {
        admin_token,
        max_connections: args.max_connections,
        header_read_timeout: Duration::from_millis(args.client_timeout_ms),
        body_read_timeout: Duration::from_millis(args.client_timeout_ms),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        max_k: args.max_k,
        max_body_bytes: args.max_body_bytes,
        timeout: Duration::from_millis(args.timeout_ms),
        retrieval: args.retrieval,
        explore: args.explore,
        explore_seed: args.explore_seed,
        ..ServeConfig::default()
    };
    let mut state = AppState::open_models(&models, design, catalog, config).with_context(|| {
        let files: Vec<String> = models.iter().map(|m| m.1.display().to_string()).collect();
        format!("loading {}", files.join(", "))
    })?;
    if let Some(dir) = &args.exposures {
        let log = ExposureLog::open(ExposureConfig {
            max_file_bytes: args.exposure_file_mb.max(1) << 20,
            max_file_age: Duration::from_secs(args.exposure_rotate_secs.max(1)),
            ..ExposureConfig::new(dir)
        })?;
        state = state.with_exposures(log)?;
    }
    let state = Arc::new(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let admin_addr = match &args.admin_addr {
            Some(a) => a.clone(),
            None => format!(
                "127.0.0.1:{}",
                listener.local_addr()?.port().saturating_add(1)
            ),
        };
        let admin = tokio::net::TcpListener::bind(&admin_addr)
            .await
            .with_context(|| {
                format!("binding the admin listener {admin_addr} (see --admin-addr)")
            })?;
        eprintln!(
            "admin routes (POST /admin/reload) on http://{}",
            admin.local_addr()?
        );
        tokio::spawn(reelkit_serve::serve_admin(admin, state.clone()));
        for name in state.model_names() {
            if let Some(m) = state.model_named(name) {
                eprintln!("model `{name}`: version {}", m.version);
            }
        }
        eprintln!(
            "serving ({} experiment) on http://{}{}",
            state.design().kind(),
            listener.local_addr()?,
            args.exposures
                .as_ref()
                .map(|d| format!(", logging exposures to {}", d.display()))
                .unwrap_or_default()
        );
        reelkit_serve::serve(listener, state, shutdown_signal())
            .await
            .context("serving")
    })
}

/// Ctrl-C, or SIGTERM on Unix (how service managers stop a process).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
