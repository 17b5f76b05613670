//! Interleaving in the simulator, checked against the A/B truth: the two
//! rankers' lists merged by team draft (the server's own
//! `reelkit_assign::team_draft`), each impression credited to the team that
//! placed it, and — because every user is also played under each ranker
//! alone — the true A/B effect beside the interleaving's verdict.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use reelkit_abtest::{
    exposure::Exposures,
    interleaving::{credits, preference, sign_test, InterleaveConfig, Preference},
    Metric, Source,
};
use reelkit_logs::{files::FileSet, Events};
use reelkit_sim::{
    assignment::Arms,
    builtin_policy,
    policies::{DayContext, FeedRequest, Scratch},
    random::{splitmix64, Rng},
    Policy, Simulator, World,
};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::calibrate::par_runs;
use crate::error::{Error, Result};
use crate::run::ArmPolicy;
use crate::spec::ValidSpec;

/// One page an interleaved policy served.
#[derive(Debug, Clone)]
struct Served {
    user_id: u64,
    ts_ms: i64,
    request_id: u64,
    video_ids: Vec<u64>,
    /// 0: team A, 1: team B.
    teams: Vec<u8>,
}

/// Team draft of two arm policies (or of one with itself: an A/A test),
/// recording every page it serves.
struct Interleaved {
    name: String,
    a: ArmPolicy,
    /// `None`: team B is team A's own list (A/A).
    b: Option<ArmPolicy>,
    salt: String,
    log: Mutex<Vec<Served>>,
}

impl Interleaved {
    /// Refreshes both teams on the interleaved log, which also judges their
    /// settings (no log of another policy is at hand here).
    fn refresh(&mut self, world: &World, log: &[&Events], today: u32) -> Result<()> {
        for p in std::iter::once(&mut self.a).chain(self.b.as_mut()) {
            if let Some(p) = p.trained() {
                p.refresh(world, log, log, today)?;
            }
        }
        Ok(())
    }
}

/// Fills `out` from `policy` with `scratch`, leaving the scratch's cursor
/// where it was (when its list was not rebuilt): items a team offered but
/// the merged page did not take are offered again on the next page.
fn offer(
    policy: &dyn Policy,
    req: &FeedRequest<'_>,
    scratch: &mut Scratch,
    rng: &mut Rng,
) -> Vec<u32> {
    let s = req.surface.index();
    let (filled, cursor) = (scratch.filled[s], scratch.cursor[s]);
    let mut out = Vec::with_capacity(req.n);
    policy.fill(req, scratch, rng, &mut out);
    if filled && scratch.filled[s] && scratch.cursor[s] >= cursor {
        scratch.cursor[s] = cursor;
    }
    out
}

impl Policy for Interleaved {
    fn name(&self) -> &str {
        &self.name
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> reelkit_sim::Result<()> {
        self.a.policy().begin_day(ctx)?;
        if let Some(b) = self.b.as_mut() {
            b.policy().begin_day(ctx)?;
        }
        Ok(())
    }

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        if state.sub.len() < 2 {
            state.sub.resize_with(2, Scratch::default);
        }
        let list_a = offer(self.a.as_policy(), req, &mut state.sub[0], rng);
        let list_b = match &self.b {
            Some(b) => offer(b.as_policy(), req, &mut state.sub[1], rng),
            None => list_a.clone(),
        };
        let user_id = req.world.users.id[req.user];
        let seed = reelkit_assign::interleave_seed(&self.salt, user_id, req.request_id);
        let merged = reelkit_assign::team_draft(&list_a, &list_b, req.n, seed);
        let start = out.len();
        out.extend(merged.iter().map(|x| x.0));
        let served = Served {
            user_id,
            ts_ms: req.ts_ms,
            request_id: req.request_id,
            video_ids: out[start..]
                .iter()
                .map(|&v| req.world.videos.id[v as usize])
                .collect(),
            teams: merged
                .iter()
                .map(|x| u8::from(x.1 == reelkit_assign::Team::B))
                .collect(),
        };
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(served);
    }
}

/// The exposure log of a simulated interleaving, as the server would have
/// written it (one row per page; first serving of a page kept).
fn exposures(mut log: Vec<Served>, teams: [&str; 2]) -> Exposures {
    log.sort_by_key(|s| (s.user_id, s.request_id));
    log.dedup_by_key(|s| (s.user_id, s.request_id));
    let names = [teams[0].to_string(), teams[1].to_string()];
    Exposures {
        dir: "<simulation>".into(),
        experiment: "interleave".into(),
        model_versions: format!("{}=sim,{}=sim", teams[0], teams[1]),
        variant: vec![None; log.len()],
        user_id: log.iter().map(|s| s.user_id).collect(),
        ts_ms: log.iter().map(|s| s.ts_ms).collect(),
        request_id: log.iter().map(|s| s.request_id).collect(),
        teams: log
            .iter()
            .map(|s| Some(s.teams.iter().map(|&t| names[t as usize].clone()).collect()))
            .collect(),
        video_ids: log.into_iter().map(|s| s.video_ids).collect(),
        skipped: Vec::new(),
    }
}

/// What one simulated run measured.
#[derive(Debug, Clone, Serialize)]
pub struct InterleaveTrial {
    /// The 0-based run.
    pub run: usize,
    /// Users with at least one experiment event.
    pub users: usize,
    /// True relative A/B lift of B over A on the lead metric (every user
    /// under each ranker alone).
    pub true_rel: f64,
    /// The interleaving of A with B, and of A with itself (A/A), on the lead metric.
    pub ab: Preference,
    /// The interleaving of A with itself (A/A) on the lead metric.
    pub aa: Preference,
    /// The A-vs-B interleaving of the lead metric on each surface's impressions.
    pub ab_by_surface: Vec<Preference>,
    /// Users an A/B test needs for 80% power at this true effect (two equal
    /// arms, two-sided α), plain and with CUPED on the pre-period's value.
    pub ab_users_80: f64,
    /// Users an A/B test needs with CUPED on the pre-period's value.
    pub ab_users_80_cuped: f64,
    /// Users the interleaving's sign test needs for 80% power.
    pub interleave_users_80: f64,
    /// Users a test of the mean per-user credit difference (B − A) needs
    /// for 80% power (normal approximation; what the bootstrap tests).
    pub interleave_users_80_mean: f64,
    /// At `check_users` users drawn from this run's: did the sign test pick B
    /// (significant, the truly better side) and was its direction right.
    pub check_users: usize,
    /// Whether the sign test was significant for the truly better side.
    pub check_significant_right: bool,
    /// Whether the sign test's direction was right (significant or not).
    pub check_direction_right: bool,
}

/// Users needed by a two-sided sign test at level `alpha` for 80% power when
/// a user prefers B with probability `p` among the share `f` of users who
/// prefer either.
fn sign_test_users(p: f64, f: f64, alpha: f64) -> f64 {
    let n = Normal::standard();
    let (za, zb) = (n.inverse_cdf(1.0 - alpha / 2.0), n.inverse_cdf(0.8));
    let d = (p - 0.5).abs();
    if d == 0.0 || f == 0.0 {
        return f64::INFINITY;
    }
    let m = ((za * 0.5 + zb * (p * (1.0 - p)).sqrt()) / d).powi(2);
    m / f
}

/// Users needed by a two-arm A/B test (equal arms) for 80% power: difference
/// in means `delta`, per-user variances `var_a`, `var_b`.
fn ab_users(delta: f64, var_a: f64, var_b: f64, alpha: f64) -> f64 {
    let n = Normal::standard();
    let z = n.inverse_cdf(1.0 - alpha / 2.0) + n.inverse_cdf(0.8);
    if delta == 0.0 {
        return f64::INFINITY;
    }
    // Each arm of m users: Var(mean_B − mean_A) = (var_a + var_b) / m.
    2.0 * z * z * (var_a + var_b) / (delta * delta)
}

fn per_user(events: &[&Events], lead: &dyn Fn(&Events, usize) -> f64) -> HashMap<u64, f64> {
    let mut m = HashMap::new();
    for e in events {
        for i in 0..e.len() {
            *m.entry(e.user_id[i]).or_insert(0.0) += lead(e, i);
        }
    }
    m
}

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(2) as f64;
    let mean = x.iter().sum::<f64>() / x.len().max(1) as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let (mx, vx) = mean_var(x);
    let (my, vy) = mean_var(y);
    let n = x.len().max(2) as f64;
    let cov = x
        .iter()
        .zip(y)
        .map(|(a, b)| (a - mx) * (b - my))
        .sum::<f64>()
        / (n - 1.0);
    if vx > 0.0 && vy > 0.0 {
        cov / (vx * vy).sqrt()
    } else {
        0.0
    }
}

/// One run: world `world`, behaviour seeded `seed`; arms A and B each alone
/// (the truth), A interleaved with B, and A interleaved with itself.
fn trial(
    spec: &ValidSpec,
    world: &World,
    run: usize,
    (a, b): (usize, usize),
    lead: &Metric,
) -> Result<(InterleaveTrial, Vec<[f64; 2]>)> {
    let seed = splitmix64(spec.world.seed.wrapping_add(run as u64) ^ 0x1EAF);
    let mut sim = Simulator::new(world).with_seed(seed);
    let mut pre_policy = builtin_policy(&spec.pre_policy)?;
    let mut pre_days = Vec::with_capacity(spec.pre_days as usize);
    for _ in 0..spec.pre_days {
        pre_days.push(sim.run(1, pre_policy.as_mut(), &|_| {})?);
    }
    let arm = |i: usize| ArmPolicy::new(&spec.arms[i].name, &spec.arms[i]);
    let (na, nb) = (spec.arms[a].name.as_str(), spec.arms[b].name.as_str());
    let salt = format!("{}-interleave-{run}", spec.salt);
    let mut alone = [arm(a)?, arm(b)?];
    let mut mixed = Interleaved {
        name: format!("{na}+{nb}"),
        a: arm(a)?,
        b: Some(arm(b)?),
        salt: salt.clone(),
        log: Mutex::new(Vec::new()),
    };
    let mut same = Interleaved {
        name: format!("{na}+{na}"),
        a: arm(a)?,
        b: None,
        salt,
        log: Mutex::new(Vec::new()),
    };
    let names = vec![
        na.to_string(),
        nb.to_string(),
        mixed.name.clone(),
        same.name.clone(),
    ];
    // Everyone is observed interleaved; the other arms are potential outcomes.
    let arms = Arms {
        names,
        of_user: vec![2; world.n_users()],
    };
    let mut exp = sim.start_experiment(&arms)?;
    for _ in 0..spec.days {
        let today = exp.day();
        for (i, p) in alone.iter_mut().enumerate() {
            if let Some(p) = p.trained() {
                let log: Vec<&Events> = pre_days.iter().chain(exp.potential(i)).collect();
                // Each team's settings are judged on the other's log.
                let judge: Vec<&Events> = pre_days.iter().chain(exp.potential(1 - i)).collect();
                p.refresh(world, &log, &judge, today)?;
            }
        }
        let log: Vec<&Events> = pre_days.iter().chain(exp.potential(2)).collect();
        mixed.refresh(world, &log, today)?;
        let log: Vec<&Events> = pre_days.iter().chain(exp.potential(3)).collect();
        same.refresh(world, &log, today)?;
        let [pa, pb] = &mut alone;
        let mut refs: Vec<&mut dyn Policy> = vec![pa.policy(), pb.policy(), &mut mixed, &mut same];
        exp.step(&mut refs)?;
    }
    let watch = |e: &Events, i: usize| e.watch_ms[i] as f64;
    let under_a = per_user(&exp.potential(0).iter().collect::<Vec<_>>(), &watch);
    let under_b = per_user(&exp.potential(1).iter().collect::<Vec<_>>(), &watch);
    let pre = per_user(&pre_days.iter().collect::<Vec<_>>(), &watch);
    let mut users: Vec<u64> = under_a.keys().chain(under_b.keys()).copied().collect();
    users.sort_unstable();
    users.dedup();
    let xa: Vec<f64> = users
        .iter()
        .map(|u| under_a.get(u).copied().unwrap_or(0.0))
        .collect();
    let xb: Vec<f64> = users
        .iter()
        .map(|u| under_b.get(u).copied().unwrap_or(0.0))
        .collect();
    let xp: Vec<f64> = users
        .iter()
        .map(|u| pre.get(u).copied().unwrap_or(0.0))
        .collect();
    let (ma, va) = mean_var(&xa);
    let (mb, vb) = mean_var(&xb);
    let rho2 = {
        let (ra, rb) = (correlation(&xa, &xp), correlation(&xb, &xp));
        (ra * ra).min(rb * rb)
    };
    let ab_n = ab_users(mb - ma, va, vb, spec.alpha);

    let cfg = InterleaveConfig {
        experiment: spec.name.clone(),
        alpha: spec.alpha,
        bootstrap: 200,
        seed,
    };
    // The lead metric, then the same on each surface (where a verdict comes from).
    let mut metrics = vec![lead.clone()];
    metrics.extend(
        reelkit_logs::Surface::ALL
            .map(reelkit_logs::Surface::as_str)
            .iter()
            .filter_map(|s| {
                lead.on_surface(s).map(|mut m| {
                    m.name = format!("{} on {s}", lead.name);
                    m
                })
            }),
    );
    let lead_pref = |p: &mut Interleaved,
                     arm: usize,
                     teams: [&str; 2]|
     -> Result<(Preference, Vec<[f64; 2]>, Vec<Preference>)> {
        let log = std::mem::take(&mut *p.log.lock().unwrap_or_else(|e| e.into_inner()));
        let exposures = exposures(log, teams);
        let mut events = Events::default();
        for d in exp.potential(arm) {
            events.append(&mut d.clone());
        }
        let c = credits(
            &Source::events("interleaved events", &events)?,
            &exposures,
            &metrics,
        )?;
        let by_surface = metrics[1..]
            .iter()
            .zip(&c.credit[1..])
            .enumerate()
            .map(|(i, (m, credit))| preference(m, credit, &c.teams, &cfg, i as u64 + 1))
            .collect();
        let credit = c.credit.into_iter().next().unwrap_or_default();
        Ok((
            preference(lead, &credit, &c.teams, &cfg, 0),
            credit,
            by_surface,
        ))
    };
    let (ab_pref, credit, ab_by_surface) = lead_pref(&mut mixed, 2, [na, nb])?;
    let (aa_pref, _, _) = lead_pref(&mut same, 3, [na, &format!("{na}-copy")])?;
    let f = (ab_pref.prefer_a + ab_pref.prefer_b) as f64
        / (ab_pref.prefer_a + ab_pref.prefer_b + ab_pref.ties).max(1) as f64;
    let interleave_n = sign_test_users(ab_pref.share_b, f, spec.alpha);
    let diff: Vec<f64> = credit.iter().map(|c| c[1] - c[0]).collect();
    let (md, vd) = mean_var(&diff);
    // One group of paired differences: n = (z_α/2 + z_β)² σ² / δ² (half the
    // two-arm formula's total).
    let interleave_mean_n = ab_users(md, vd, 0.0, spec.alpha) / 2.0;
    let t = InterleaveTrial {
        run,
        users: users.len(),
        true_rel: if ma > 0.0 { mb / ma - 1.0 } else { 0.0 },
        ab: ab_pref,
        aa: aa_pref,
        ab_by_surface,
        ab_users_80: ab_n,
        ab_users_80_cuped: ab_n * (1.0 - rho2),
        interleave_users_80: interleave_n,
        interleave_users_80_mean: interleave_mean_n,
        check_users: 0,
        check_significant_right: false,
        check_direction_right: false,
    };
    Ok((t, credit))
}

/// The sign test on `k` of a run's users drawn without replacement (seeded
/// by the run): (significant for the truly better side, direction right).
fn check(t: &InterleaveTrial, credit: &[[f64; 2]], k: usize, alpha: f64) -> (usize, bool, bool) {
    let mut rng = Rng::new(splitmix64(t.run as u64 ^ 0xC4EC));
    let mut idx: Vec<usize> = (0..credit.len()).collect();
    let k = k.min(idx.len());
    for i in 0..k {
        let j = i + rng.below((idx.len() - i) as u64) as usize;
        idx.swap(i, j);
    }
    let (mut wa, mut wb) = (0u64, 0u64);
    for &i in &idx[..k] {
        let [ca, cb] = credit[i];
        if cb > ca {
            wb += 1;
        } else if ca > cb {
            wa += 1;
        }
    }
    let right = if t.true_rel > 0.0 { wb > wa } else { wa > wb };
    (k, right && sign_test(wb, wa + wb) < alpha, right)
}

/// Interleaving's calibration over repeated runs.
#[derive(Debug, Clone, Serialize)]
pub struct InterleaveCalibration {
    /// The spec's name.
    pub name: String,
    /// The recipe of team A (the interleaving's first ranker).
    pub team_a: String,
    /// The recipe of team B.
    pub team_b: String,
    /// The lead metric (credit per item).
    pub metric: String,
    /// Simulated runs.
    pub runs: usize,
    /// Significance level of the tests.
    pub alpha: f64,
    /// Mean users per run, and the mean true A/B lift of B over A.
    pub users: f64,
    /// Mean true relative A/B lift of B over A.
    pub mean_true_rel: f64,
    /// A/A (A interleaved with itself): share of runs whose sign test rejected.
    pub aa_false_positive_rate: f64,
    /// A vs B at every run's full population: share of runs significant in
    /// the truly better team's favour, and share with the right direction.
    pub ab_power_full: f64,
    /// A vs B: share of runs whose direction was right.
    pub ab_direction_right: f64,
    /// Median users needed for 80% power.
    pub ab_users_80: f64,
    /// … with CUPED.
    pub ab_users_80_cuped: f64,
    /// … for the interleaving's sign test.
    pub interleave_users_80: f64,
    /// … by the mean credit difference.
    pub interleave_users_80_mean: f64,
    /// `ab_users_80_cuped / interleave_users_80`.
    pub users_ratio_cuped: f64,
    /// At `check_users` (the median interleaving need, rounded up): share of
    /// runs significant for the better team, and with its direction right.
    pub check_users: usize,
    /// Share of runs significant for the better team at `check_users`.
    pub check_power: f64,
    /// Share of runs with the direction right at `check_users`.
    pub check_direction_right: f64,
    /// Every run.
    pub trials: Vec<InterleaveTrial>,
}

fn median(mut x: Vec<f64>) -> f64 {
    x.retain(|v| v.is_finite());
    if x.is_empty() {
        return f64::INFINITY;
    }
    x.sort_unstable_by(f64::total_cmp);
    let n = x.len();
    if n % 2 == 1 {
        x[n / 2]
    } else {
        0.5 * (x[n / 2 - 1] + x[n / 2])
    }
}

/// Repeats an interleaved experiment of arms `a` (team A) and `b` (team B)
/// of `spec` `runs` times on one world: each run plays every user under A
/// alone, B alone (the truth), A interleaved with B and A interleaved with
/// itself (A/A). Measures the A/A false-positive rate, how often the sign
/// test picks the truly better ranker, and the users each design needs for
/// 80% power on watch time. `check_users` = 0 checks at the median
/// interleaving need found by a first pass over the same runs.
pub fn calibrate_interleaving(
    spec: &ValidSpec,
    a: &str,
    b: &str,
    runs: usize,
    check_users: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<InterleaveCalibration> {
    let find = |n: &str| {
        spec.arms.iter().position(|x| x.name == n).ok_or_else(|| {
            Error::spec(
                "interleave",
                format!(
                    "no arm `{n}` (arms: {})",
                    spec.arms
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    };
    let (ia, ib) = (find(a)?, find(b)?);
    if ia == ib {
        return Err(Error::spec(
            "interleave",
            "team A and team B must be two arms",
        ));
    }
    if runs == 0 {
        return Err(Error::spec("runs", "must be at least 1, got 0"));
    }
    let lead = spec
        .metrics
        .iter()
        .find(|m| m.name == "watch_time_per_user")
        .unwrap_or(&spec.metrics[0])
        .clone();
    let world = World::generate(&spec.world);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let played = par_runs(runs, |run| {
        let t = trial(spec, &world, run, (ia, ib), &lead);
        progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
        t
    })?;
    let need = median(played.iter().map(|t| t.0.interleave_users_80).collect());
    let check_users = if check_users == 0 {
        need.ceil().max(1.0) as usize
    } else {
        check_users
    };
    let trials: Vec<InterleaveTrial> = played
        .into_iter()
        .map(|(mut t, credit)| {
            let (k, sig, right) = check(&t, &credit, check_users, spec.alpha);
            t.check_users = k;
            t.check_significant_right = sig;
            t.check_direction_right = right;
            t
        })
        .collect();
    let n = trials.len() as f64;
    let share =
        |f: &dyn Fn(&InterleaveTrial) -> bool| trials.iter().filter(|t| f(t)).count() as f64 / n;
    let ab80 = median(trials.iter().map(|t| t.ab_users_80).collect());
    let ab80c = median(trials.iter().map(|t| t.ab_users_80_cuped).collect());
    Ok(InterleaveCalibration {
        name: spec.name.clone(),
        team_a: a.to_string(),
        team_b: b.to_string(),
        metric: lead.name.clone(),
        runs,
        alpha: spec.alpha,
        users: trials.iter().map(|t| t.users as f64).sum::<f64>() / n,
        mean_true_rel: trials.iter().map(|t| t.true_rel).sum::<f64>() / n,
        aa_false_positive_rate: share(&|t| t.aa.p_sign < spec.alpha),
        ab_power_full: share(&|t| {
            t.ab.p_sign < spec.alpha && (t.ab.share_b > 0.5) == (t.true_rel > 0.0)
        }),
        ab_direction_right: share(&|t| (t.ab.share_b > 0.5) == (t.true_rel > 0.0)),
        ab_users_80: ab80,
        ab_users_80_cuped: ab80c,
        interleave_users_80: need,
        interleave_users_80_mean: median(
            trials.iter().map(|t| t.interleave_users_80_mean).collect(),
        ),
        users_ratio_cuped: ab80c / need,
        check_users,
        check_power: share(&|t| t.check_significant_right),
        check_direction_right: share(&|t| t.check_direction_right),
        trials,
    })
}

/// The calibration as Markdown.
pub fn interleaving_markdown(c: &InterleaveCalibration) -> String {
    let mut s = format!(
        "# Interleaving calibration of `{}`: `{}` (A) vs `{}` (B)\n\n{} runs, {:.0} users each on average; lead metric `{}`; α = {}. Each run plays every user under A alone and B alone (the A/B truth), under A interleaved with B, and under A interleaved with itself (A/A).\n\n",
        c.name, c.team_a, c.team_b, c.runs, c.users, c.metric, c.alpha
    );
    let _ = writeln!(s, "| measure | value |\n|---|---:|");
    let rows: Vec<(&str, String)> = vec![
        (
            "mean true A/B lift of B over A",
            format!("{:+.2}%", 100.0 * c.mean_true_rel),
        ),
        (
            "A/A false-positive rate (sign test)",
            format!("{:.1}%", 100.0 * c.aa_false_positive_rate),
        ),
        (
            "runs picking the truly better ranker (direction), all users",
            format!("{:.1}%", 100.0 * c.ab_direction_right),
        ),
        (
            "power at all users (significant, right side)",
            format!("{:.1}%", 100.0 * c.ab_power_full),
        ),
        (
            "users for 80% power: A/B test",
            format!("{:.0}", c.ab_users_80),
        ),
        (
            "users for 80% power: A/B test with CUPED",
            format!("{:.0}", c.ab_users_80_cuped),
        ),
        (
            "users for 80% power: interleaving (sign test)",
            format!("{:.0}", c.interleave_users_80),
        ),
        (
            "users for 80% power: interleaving (mean credit difference)",
            format!("{:.0}", c.interleave_users_80_mean),
        ),
        (
            "A/B (CUPED) users / interleaving users",
            format!("{:.1}×", c.users_ratio_cuped),
        ),
        (
            "check (sign test): users drawn per run",
            format!("{}", c.check_users),
        ),
        (
            "check: power at that size",
            format!("{:.1}%", 100.0 * c.check_power),
        ),
        (
            "check: right direction at that size",
            format!("{:.1}%", 100.0 * c.check_direction_right),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    if let Some(first) = c.trials.first() {
        let _ = writeln!(
            s,
            "\nWhere the interleaving's verdict comes from (means over runs):\n\n| impressions | share of users preferring `{}` | credit lift of `{}` |\n|---|---:|---:|",
            c.team_b, c.team_b
        );
        let n = c.trials.len() as f64;
        let mean = |f: &dyn Fn(&InterleaveTrial) -> f64| c.trials.iter().map(f).sum::<f64>() / n;
        let _ = writeln!(
            s,
            "| all | {:.1}% | {:+.2}% |",
            100.0 * mean(&|t| t.ab.share_b),
            100.0 * mean(&|t| t.ab.credit_lift)
        );
        for (i, p) in first.ab_by_surface.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {:.1}% | {:+.2}% |",
                p.metric,
                100.0 * mean(&|t| t.ab_by_surface.get(i).map_or(f64::NAN, |x| x.share_b)),
                100.0 * mean(&|t| t.ab_by_surface.get(i).map_or(f64::NAN, |x| x.credit_lift))
            );
        }
    }
    s.push_str("\nUsers for 80% power: A/B from each run's potential outcomes (two equal arms, per-user watch-time variance under each ranker; CUPED scales it by 1 − ρ² with the pre-period's watch time), interleaving from the sign test's normal approximation at the run's share of users preferring B and share with a preference; medians over runs.\n");
    s
}

/// Writes interleaving.json and interleaving.md into `dir`, all or nothing.
pub fn write_interleaving(dir: &Path, c: &InterleaveCalibration) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_vec_pretty(c).map_err(|e| Error::Parse {
        what: "interleaving calibration".into(),
        message: e.to_string(),
    })?;
    let mut set = FileSet::new();
    set.write_bytes(&dir.join("interleaving.json"), &json)?;
    set.write_bytes(
        &dir.join("interleaving.md"),
        interleaving_markdown(c).as_bytes(),
    )?;
    set.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_sizes_follow_the_textbook_formulas() {
        // Two-sided α = 0.05, power 0.8: (1.95996 + 0.84162)² = 7.8489.
        // A/B: δ = 1, σ² = 1 each: 2 · 7.8489 · 2 = 31.4 users in total.
        assert!((ab_users(1.0, 1.0, 1.0, 0.05) - 31.396).abs() < 0.01);
        // Sign test, p = 0.6, everyone with a preference:
        // ((1.95996 · 0.5 + 0.84162 · 0.4899) / 0.1)² = 193.5 users.
        assert!((sign_test_users(0.6, 1.0, 0.05) - 193.5).abs() < 0.5);
        // Half the users tie: twice as many users.
        assert!((sign_test_users(0.6, 0.5, 0.05) - 387.0).abs() < 1.0);
        assert!(sign_test_users(0.5, 1.0, 0.05).is_infinite());
    }
}
