//! Choosing each surface's specific share `φ` on impressions a model did
//! not train on: the held-out score ([`heldout_concordance`]), one day's
//! choice ([`choose_specific`]) and a choice on several days' pooled
//! evidence ([`HeldOutScore::pool`], [`pick_specific`]).

use rayon::prelude::*;

use super::{repeat_rows, slot_rows, solve_some_users, Shares, SurfaceData, SurfaceParams};
use crate::als::check_lengths;
use crate::error::{Error, Result};
use crate::linalg::dot;
use crate::params::ValidTrainParams;

/// Impressions a model did not train on, to judge it by.
#[derive(Debug, Clone, Copy)]
pub struct HeldOut<'a> {
    /// Row (user index of the model's data) of each impression.
    pub user: &'a [u32],
    /// Surface of each impression.
    pub surface: &'a [u8],
    /// Item index of each impression.
    pub item: &'a [u32],
    /// Engagement weight of each impression (the gain).
    pub gain: &'a [f32],
}

/// A model's score on held-out impressions, per surface: `value[s] =
/// Σ groups[s] / denominator[s]`, where each (user, surface) group of
/// impressions contributes one term (for paired comparisons of two models on
/// the same groups). See [`heldout_concordance`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOutScore {
    /// Per surface: Σ group terms / denominator (NaN without a group).
    pub value: Vec<f64>,
    /// Per surface: the denominator.
    pub denominator: Vec<f64>,
    /// Per surface: each group's numerator, in a fixed group order.
    pub groups: Vec<Vec<f64>>,
}

impl HeldOutScore {
    /// Several days' scores of one model setting as one: denominators add,
    /// groups are concatenated in the order given, so two settings pooled
    /// over the same days stay paired group by group. `None` when `days` is
    /// empty or the days disagree on the number of surfaces.
    pub fn pool<'a>(days: impl IntoIterator<Item = &'a HeldOutScore>) -> Option<HeldOutScore> {
        let mut days = days.into_iter();
        let first = days.next()?;
        let ns = first.value.len();
        let mut out = first.clone();
        for d in days {
            if d.value.len() != ns {
                return None;
            }
            for ((den, groups), (dd, dg)) in out
                .denominator
                .iter_mut()
                .zip(out.groups.iter_mut())
                .zip(d.denominator.iter().zip(&d.groups))
            {
                *den += dd;
                groups.extend_from_slice(dg);
            }
        }
        out.value = out
            .groups
            .iter()
            .zip(&out.denominator)
            .map(|(g, b)| {
                if *b > 0.0 {
                    g.iter().sum::<f64>() / b
                } else {
                    f64::NAN
                }
            })
            .collect();
        Some(out)
    }
}

/// `Σ_k g_k (2 r_k − n + 1)` with `r_k` the average rank of `key_k`.
fn signed_rank_sum(keys: &[f64], gains: &[f64]) -> f64 {
    signed_rank_sum_with(keys, gains, &mut Vec::new())
}

/// [`signed_rank_sum`] with `order` as scratch. Ties are summed in index
/// order (the order a stable sort by key leaves them in).
fn signed_rank_sum_with(keys: &[f64], gains: &[f64], order: &mut Vec<usize>) -> f64 {
    let n = keys.len();
    order.clear();
    order.extend(0..n);
    order.sort_unstable_by(|&a, &b| keys[a].total_cmp(&keys[b]).then(a.cmp(&b)));
    let mut total = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && keys[order[j]] == keys[order[i]] {
            j += 1;
        }
        let rank = (i + j - 1) as f64 / 2.0;
        for &k in &order[i..j] {
            total += gains[k] * (2.0 * rank - n as f64 + 1.0);
        }
        i = j;
    }
    total
}

/// The gain-weighted concordance of the scores `w_us · z_is` with the gains
/// of held-out impressions, per surface (`surface`: `users × n_surfaces ×
/// dim`, `items`: `items × n_surfaces × dim`, as in [`super::SurfaceFactors`]).
///
/// Within each (user, surface) group of `n` impressions ordered by score,
/// `Σ_{i<j} (g_j − g_i) = Σ_k g_k (2 r_k − n + 1)` (ties share their
/// average rank) counts every pair's gain difference with the sign of its
/// order; dividing the sum over groups by the same sum with the impressions
/// in gain order gives 1 for a perfect order, 0 for a random one, −1 for the
/// reverse. Groups of one impression say nothing and are left out. It judges
/// the order of what was shown: the impressions should be ones the judged
/// model did not choose (another policy's log), or it judges its own
/// choices.
pub fn heldout_concordance(
    dim: usize,
    n_surfaces: usize,
    surface: &[f32],
    items: &[f32],
    item_bias: Option<&[f32]>,
    h: &HeldOut<'_>,
) -> Result<HeldOutScore> {
    let groups = Groups::of(h)?;
    Ok(groups.concordance(dim, n_surfaces, surface, items, item_bias, h))
}

/// The (user, surface) groups of held-out impressions with two or more,
/// and each group's best order's sum: what every model judged on the same
/// impressions shares (choosing a share judges several).
struct Groups {
    /// Impression indices in (user, surface, index) order.
    order: Vec<usize>,
    /// Each group's range in `order` and its sum in gain order.
    spans: Vec<(usize, usize, f64)>,
}

impl Groups {
    fn of(h: &HeldOut<'_>) -> Result<Groups> {
        let n = h.user.len();
        check_lengths(&[
            ("held-out surfaces", n, h.surface.len()),
            ("held-out items", n, h.item.len()),
            ("held-out gains", n, h.gain.len()),
        ])?;
        // The keys are unique (the index breaks ties): any sort gives this order.
        let mut order: Vec<usize> = (0..n).collect();
        order.par_sort_unstable_by_key(|&i| (h.user[i], h.surface[i], i));
        let mut spans = Vec::new();
        let mut i = 0;
        while i < n {
            let key = (h.user[order[i]], h.surface[order[i]]);
            let mut j = i + 1;
            while j < n && (h.user[order[j]], h.surface[order[j]]) == key {
                j += 1;
            }
            if j - i >= 2 {
                let gains: Vec<f64> = order[i..j].iter().map(|&k| h.gain[k] as f64).collect();
                spans.push((i, j, signed_rank_sum(&gains, &gains)));
            }
            i = j;
        }
        Ok(Groups { order, spans })
    }

    /// [`heldout_concordance`] on these groups of `h`.
    fn concordance(
        &self,
        dim: usize,
        n_surfaces: usize,
        surface: &[f32],
        items: &[f32],
        item_bias: Option<&[f32]>,
        h: &HeldOut<'_>,
    ) -> HeldOutScore {
        // Each worker's scratch (scores, gains, order) lives across its groups.
        let per_group: Vec<(usize, f64, f64)> = self
            .spans
            .par_iter()
            .map_init(
                || (Vec::new(), Vec::new(), Vec::new()),
                |(scores, gains, order): &mut (Vec<f64>, Vec<f64>, Vec<usize>), &(i, j, best)| {
                    let idx = &self.order[i..j];
                    let (u, s) = (h.user[idx[0]] as usize, h.surface[idx[0]] as usize);
                    let at = (u * n_surfaces + s) * dim;
                    let w = &surface[at..at + dim];
                    scores.clear();
                    scores.extend(idx.iter().map(|&k| {
                        let it = h.item[k] as usize;
                        let b = item_bias.map_or(0.0, |b| b[it]);
                        let at = (it * n_surfaces + s) * dim;
                        (dot(w, &items[at..at + dim]) + b) as f64
                    }));
                    gains.clear();
                    gains.extend(idx.iter().map(|&k| h.gain[k] as f64));
                    (s, signed_rank_sum_with(scores, gains, order), best)
                },
            )
            .collect();
        let mut num = vec![0f64; n_surfaces];
        let mut den = vec![0f64; n_surfaces];
        let mut groups = vec![Vec::new(); n_surfaces];
        for (s, a, b) in per_group {
            num[s] += a;
            den[s] += b;
            groups[s].push(a);
        }
        HeldOutScore {
            value: num
                .iter()
                .zip(&den)
                .map(|(a, b)| if *b > 0.0 { a / b } else { f64::NAN })
                .collect(),
            denominator: den,
            groups,
        }
    }
}

/// What [`choose_specific`] measured and chose.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecificChoice {
    /// The chosen share per surface.
    pub specific: Vec<f32>,
    /// The grid tried.
    pub grid: Vec<f32>,
    /// `score[g][s]`: the held-out score of grid value `g` on surface `s`.
    pub score: Vec<Vec<f64>>,
    /// Held-out impressions in scored pairs' groups, per surface.
    pub groups: Vec<usize>,
    /// `evidence[g]`: grid value `g`'s score, group by group (to pool with
    /// other days' and choose again with [`pick_specific`]).
    pub evidence: Vec<HeldOutScore>,
}

impl SpecificChoice {
    /// The choice from each grid value's held-out score (one standard error
    /// rule, see [`pick_specific`]).
    fn of(grid: Vec<f32>, results: Vec<HeldOutScore>) -> SpecificChoice {
        SpecificChoice {
            specific: pick_specific(&grid, &results, 1.0),
            score: results.iter().map(|r| r.value.clone()).collect(),
            groups: results[0].groups.iter().map(Vec::len).collect(),
            grid,
            evidence: results,
        }
    }
}

/// Chooses each surface's specific share on held-out impressions: for each
/// value of `grid` (every surface at that value), the users are re-solved
/// with the videos' surface vectors `items` (`items × surfaces × dim`) fixed (`steps` CG iterations, from `start`
/// when given) and `heldout` is scored per surface. Per surface it keeps the
/// smallest share (the most shared taste) whose paired difference in
/// concordance to the best share is within one standard error of that
/// difference, so noise does not buy a surface its own taste.
#[allow(clippy::too_many_arguments)]
pub fn choose_specific(
    data: &SurfaceData,
    items: &[f32],
    p: &ValidTrainParams,
    grid: &[f32],
    heldout: &HeldOut<'_>,
    start: Option<(&[f32], &[f32])>,
    steps: usize,
) -> Result<SpecificChoice> {
    let ns = data.n_surfaces;
    let grid = sorted_grid(grid)?;
    // Only the users the held-out day judges need solving.
    let only = check_heldout(data, heldout)?;
    let mut specifics = Vec::with_capacity(grid.len());
    for &g in &grid {
        let checked = SurfaceParams {
            specific: vec![g; ns],
            item_specific: vec![0.0; ns],
        }
        .check(ns)?;
        specifics.push(checked.specific.clone());
    }
    let groups = Groups::of(heldout)?;
    let results: Vec<HeldOutScore> =
        solve_some_users(data, items, p, &specifics, start, steps, Some(&only))?
            .iter()
            .map(|(_, surface)| groups.concordance(p.factors, ns, surface, items, None, heldout))
            .collect();
    Ok(SpecificChoice::of(grid, results))
}

/// Chooses each surface's video specific share `ψ_s` on held-out
/// impressions, as [`choose_specific`] does the users': for each value of
/// `grid` (every surface at that value), the videos are re-solved with the
/// users' surface vectors `surface` fixed (the videos `heldout` judges, one
/// half-sweep from `items` and `surface_items`, `steps` CG iterations) and
/// `heldout` is scored per
/// surface; per surface it keeps the most shared value within one standard
/// error of the best. A sparse surface borrows the other surfaces' evidence
/// about a video through a small `ψ`; a surface whose audience reads videos
/// its own way gets a large one.
#[allow(clippy::too_many_arguments)]
pub fn choose_item_specific(
    data: &SurfaceData,
    surface: &[f32],
    items: &[f32],
    surface_items: &[f32],
    p: &ValidTrainParams,
    grid: &[f32],
    heldout: &HeldOut<'_>,
    steps: usize,
) -> Result<SpecificChoice> {
    let ns = data.n_surfaces;
    let f = p.factors;
    let grid = sorted_grid(grid)?;
    check_heldout(data, heldout)?;
    check_lengths(&[
        (
            "user surface vectors",
            data.users.len() * ns * f,
            surface.len(),
        ),
        ("item factors", data.items.len() * f, items.len()),
        (
            "item surface vectors",
            data.items.len() * ns * f,
            surface_items.len(),
        ),
    ])?;
    // Only the videos the held-out day judges need solving.
    let mut judged = vec![false; data.items.len()];
    for &i in heldout.item {
        judged[i as usize] = true;
    }
    // The training state: rows without data are zeros.
    let mut w = surface.to_vec();
    super::clear_missing(data, f, &mut w);
    let sides = super::Sides::new(data, p);
    let isa = crate::simd::Isa::detect();
    // Every share re-solved in one pass over the judged videos.
    let shares: Vec<Shares> = grid.iter().map(|&g| Shares::new(&vec![g; ns])).collect();
    let k = shares.len();
    let (mut q, mut z) = (
        repeat_rows(items, f, k),
        repeat_rows(surface_items, ns * f, k),
    );
    super::item_step(
        isa,
        data,
        &sides,
        &w,
        &shares,
        p,
        steps.max(1),
        Some(&judged),
        &mut q,
        &mut z,
    );
    let groups = Groups::of(heldout)?;
    let results: Vec<HeldOutScore> = (0..k)
        .map(|j| groups.concordance(f, ns, surface, &slot_rows(&z, ns * f, k, j), None, heldout))
        .collect();
    Ok(SpecificChoice::of(grid, results))
}

/// `grid` sorted, without repeats; an error when empty.
fn sorted_grid(grid: &[f32]) -> Result<Vec<f32>> {
    let mut grid: Vec<f32> = grid.to_vec();
    grid.sort_by(f32::total_cmp);
    grid.dedup();
    if grid.is_empty() {
        return Err(Error::InvalidParam {
            field: "grid",
            allowed: "at least one share in [0, 1]",
            got: "[]".into(),
        });
    }
    Ok(grid)
}

/// Checks that the held-out rows are the data's users, items and surfaces;
/// returns which users it judges.
fn check_heldout(data: &SurfaceData, heldout: &HeldOut<'_>) -> Result<Vec<bool>> {
    let ns = data.n_surfaces;
    let mut only = vec![false; data.users.len()];
    for &u in heldout.user {
        if let Some(o) = only.get_mut(u as usize) {
            *o = true;
        } else {
            return Err(Error::InvalidInput(format!(
                "held-out user row {u} is not one of the {} users",
                data.users.len()
            )));
        }
    }
    if let Some(&i) = heldout
        .item
        .iter()
        .find(|&&i| i as usize >= data.items.len())
    {
        return Err(Error::InvalidInput(format!(
            "held-out item row {i} is not one of the {} items",
            data.items.len()
        )));
    }
    if let Some(&s) = heldout.surface.iter().find(|&&s| s as usize >= ns) {
        return Err(Error::InvalidInput(format!(
            "held-out surface {s} is not below the {ns} surfaces"
        )));
    }
    Ok(only)
}

/// Per surface, the most shared value of `grid` (sorted ascending) whose
/// paired difference in held-out score to the best value is within
/// `tolerance` standard errors of that difference (0: the best value, ties
/// to the more shared); `evidence[g]` is grid value `g`'s
/// score on the same groups (one day's, or several days' pooled with
/// [`HeldOutScore::pool`]). A surface without a scored group keeps the most
/// shared value: nothing says it differs.
pub fn pick_specific(grid: &[f32], evidence: &[HeldOutScore], tolerance: f64) -> Vec<f32> {
    let ns = evidence.first().map_or(0, |e| e.value.len());
    let mut chosen = Vec::with_capacity(ns);
    for s in 0..ns {
        let finite: Vec<usize> = (0..grid.len().min(evidence.len()))
            .filter(|&g| evidence[g].value[s].is_finite())
            .collect();
        let Some(&best) = finite
            .iter()
            .max_by(|&&a, &&b| evidence[a].value[s].total_cmp(&evidence[b].value[s]))
        else {
            chosen.push(grid[0]);
            continue;
        };
        let den = evidence[best].denominator[s];
        let pick = finite
            .iter()
            .copied()
            .find(|&g| {
                let d: Vec<f64> = evidence[best].groups[s]
                    .iter()
                    .zip(&evidence[g].groups[s])
                    .map(|(a, b)| a - b)
                    .collect();
                let k = d.len() as f64;
                let mean = d.iter().sum::<f64>() / k;
                let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
                let diff = d.iter().sum::<f64>() / den;
                let se = (var * k).sqrt() / den;
                diff <= tolerance * se
            })
            .unwrap_or(best);
        chosen.push(grid[pick]);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::TrainParams;
    use crate::rng::SplitMix;
    use crate::surfaces::tests::{params, planted_with_topics, shares, PER_TOPIC, TOPICS};
    use crate::surfaces::train_surface_ials;
    use crate::ValidTrainParams;

    /// The planted choices' training settings.
    fn planted_params() -> Result<ValidTrainParams> {
        TrainParams {
            factors: 8,
            epochs: 8,
            reg: 2.0,
            alpha: 4.0,
            ..params(8).get().clone()
        }
        .check()
    }

    /// A held-out log's columns, owned.
    struct Log {
        user: Vec<u32>,
        surface: Vec<u8>,
        item: Vec<u32>,
        gain: Vec<f32>,
    }

    impl Log {
        fn held_out(&self) -> HeldOut<'_> {
            HeldOut {
                user: &self.user,
                surface: &self.surface,
                item: &self.item,
                gain: &self.gain,
            }
        }
    }
    use crate::TrainControl;

    #[test]
    fn concordance_counts_gain_differences_in_score_order() -> Result<()> {
        // One user, one surface, three items scored 3, 2, 1 (item i: vector [3 − i]).
        let items = [3.0f32, 2.0, 1.0];
        let surface = [1.0f32];
        let h = HeldOut {
            user: &[0, 0, 0],
            surface: &[0, 0, 0],
            item: &[0, 1, 2],
            gain: &[2.0, 1.0, 0.0],
        };
        let c = heldout_concordance(1, 1, &surface, &items, None, &h)?;
        assert!((c.value[0] - 1.0).abs() < 1e-12, "{c:?}");
        let rev = HeldOut {
            gain: &[0.0, 1.0, 2.0],
            ..h
        };
        assert!(
            (heldout_concordance(1, 1, &surface, &items, None, &rev)?.value[0] + 1.0).abs() < 1e-12
        );
        // Scores tied: no order, 0.
        let flat = [1.0f32, 1.0, 1.0];
        assert!(heldout_concordance(1, 1, &surface, &flat, None, &h)?.value[0].abs() < 1e-12);
        // Pairs by brute force on a random group.
        let mut rng = SplitMix::new(9, 0, 0);
        let n = 40;
        let its: Vec<f32> = (0..n).map(|_| rng.centred()).collect();
        let gains: Vec<f32> = (0..n)
            .map(|k| if k % 3 == 0 { 1.0 } else { rng.centred() })
            .collect();
        let idx: Vec<u32> = (0..n as u32).collect();
        let h = HeldOut {
            user: &vec![0; n],
            surface: &vec![0; n],
            item: &idx,
            gain: &gains,
        };
        let c = heldout_concordance(1, 1, &surface, &its, None, &h)?;
        let (mut num, mut den) = (0f64, 0f64);
        for i in 0..n {
            for j in 0..n {
                if its[i] < its[j] {
                    num += (gains[j] - gains[i]) as f64;
                }
                if gains[i] < gains[j] {
                    den += (gains[j] - gains[i]) as f64;
                }
            }
        }
        assert!(
            (c.value[0] - num / den).abs() < 1e-6,
            "{} {}",
            c.value[0],
            num / den
        );
        Ok(())
    }

    /// A control policy's log of the planted world: every user is shown
    /// twelve random videos per surface, and engages (gain 1) with those of
    /// their taste's topic there. Video `v` is logged on surface `s` under
    /// the id `on(s, v)`; `seed` draws the videos.
    fn control_log(
        data: &SurfaceData,
        topics: &[Vec<usize>],
        seed: u64,
        on: impl Fn(u8, u64) -> u64,
    ) -> Log {
        let (mut u, mut s, mut i, mut g) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut rng = SplitMix::new(seed, 0, 0);
        for (user, mine) in topics.iter().enumerate() {
            let Some(row) = data.users.get(1000 + user as u64) else {
                continue;
            };
            for (surface, &topic) in mine.iter().enumerate() {
                for _ in 0..12 {
                    let video = rng.below((TOPICS * PER_TOPIC) as u64);
                    let Some(col) = data.items.get(on(surface as u8, video)) else {
                        continue;
                    };
                    u.push(row);
                    s.push(surface as u8);
                    i.push(col);
                    g.push((video as usize / PER_TOPIC == topic) as u8 as f32);
                }
            }
        }
        Log {
            user: u,
            surface: s,
            item: i,
            gain: g,
        }
    }

    #[test]
    fn the_chosen_share_is_small_when_tastes_agree_and_large_when_they_do_not() -> Result<()> {
        let p = planted_params()?;
        let grid = [0.0, 0.25, 0.5, 0.75, 1.0];
        let mut chosen = Vec::new();
        for divergence in [0.0, 1.0] {
            let (us, ss, is, topics) = planted_with_topics(400, 3, divergence, 21);
            let data = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0)?;
            let mid = shares(vec![0.5; 3], vec![0.0; 3])?;
            let fac = train_surface_ials(&data, &p, &mid, &mut TrainControl::default())?;
            let log = control_log(&data, &topics, 11, |_, v| v);
            let h = log.held_out();
            let c = choose_specific(
                &data,
                &fac.surface_items,
                &p,
                &grid,
                &h,
                Some((&fac.shared, &fac.surface)),
                8,
            )?;
            chosen.push((c.specific.clone(), c.score.clone()));
        }
        // Planted agreement: none of the taste is a surface's own, the
        // shrinkage towards the shared taste is complete.
        assert!(chosen[0].0.iter().all(|&x| x == 0.0), "{chosen:?}");
        // Planted independence: a share of its own on every surface, and one
        // taste everywhere (φ = 0) judged clearly worse than the choice.
        let (picked, score) = &chosen[1];
        for s in 0..3 {
            assert!(picked[s] > 0.0, "{chosen:?}");
            let at = grid.iter().position(|&g| g == picked[s]).unwrap_or(0);
            assert!(score[0][s] < score[at][s] - 0.1, "{chosen:?}");
        }
        Ok(())
    }

    #[test]
    fn the_chosen_video_share_is_large_only_where_videos_mean_something_else() -> Result<()> {
        // Users' tastes agree on every surface; on surface 1 the videos'
        // ids are scrambled (video `x` there is what `perm[x]` is elsewhere),
        // so no one vector per video serves surface 1 and surfaces 0 and 2.
        let p = planted_params()?;
        let n_items = (TOPICS * PER_TOPIC) as u64;
        let mut perm: Vec<u64> = (0..n_items).collect();
        let mut rng = SplitMix::new(13, 0, 0);
        for i in (1..perm.len()).rev() {
            perm.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let grid = [0.0, 0.5, 1.0];
        let mut chosen = Vec::new();
        for scrambled in [false, true] {
            let on = |s: u8, x: u64| {
                if scrambled && s == 1 {
                    perm[x as usize]
                } else {
                    x
                }
            };
            let (us, ss, is, topics) = planted_with_topics(400, 3, 0.0, 31);
            let is: Vec<u64> = is.iter().zip(&ss).map(|(&x, &s)| on(s, x)).collect();
            let data = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0)?;
            let sp = shares(vec![0.0; 3], vec![0.0; 3])?;
            let fac = train_surface_ials(&data, &p, &sp, &mut TrainControl::default())?;
            let log = control_log(&data, &topics, 17, on);
            let h = log.held_out();
            let c = choose_item_specific(
                &data,
                &fac.surface,
                &fac.items,
                &fac.surface_items,
                &p,
                &grid,
                &h,
                8,
            )?;
            chosen.push((c.specific.clone(), c.score.clone()));
        }
        // Videos that mean the same everywhere keep one vector.
        assert!(chosen[0].0.iter().all(|&x| x == 0.0), "{chosen:?}");
        // Scrambled on surface 1: a vector of its own there, clearly better
        // than one vector per video.
        let (picked, score) = &chosen[1];
        assert!(picked[1] > 0.0, "{chosen:?}");
        let at = grid.iter().position(|&g| g == picked[1]).unwrap_or(0);
        assert!(score[0][1] < score[at][1] - 0.1, "{chosen:?}");
        Ok(())
    }

    /// One surface, each group's numerator; the denominator is the group count.
    fn score(groups: &[f64]) -> HeldOutScore {
        let den = groups.len() as f64;
        HeldOutScore {
            value: vec![groups.iter().sum::<f64>() / den],
            denominator: vec![den],
            groups: vec![groups.to_vec()],
        }
    }

    #[test]
    fn pooled_days_pick_the_share_one_day_cannot_tell_apart() {
        let grid = [0.0f32, 1.0];
        // Day by day the specific share is ahead by less than its noise: the
        // one-SE rule keeps the shared taste, and so does the best (0) on
        // the second day, where noise reversed it.
        let day1 = [score(&[0.5, 0.1, 0.3, 0.2]), score(&[0.9, -0.2, 0.6, 0.1])];
        let day2 = [score(&[0.4, 0.3, 0.2, 0.5]), score(&[0.3, 0.4, 0.2, 0.4])];
        assert_eq!(pick_specific(&grid, &day1, 1.0), vec![0.0]);
        assert_eq!(pick_specific(&grid, &day2, 0.0), vec![0.0]);
        assert_eq!(pick_specific(&grid, &day1, 0.0), vec![1.0]);
        // Pooled, the groups stay paired and the sums add.
        let pooled: Vec<HeldOutScore> = (0..2)
            .map(|g| HeldOutScore::pool([&day1[g], &day2[g]]).expect("same surfaces"))
            .collect();
        assert_eq!(pooled[1].groups[0].len(), 8);
        assert!((pooled[0].value[0] - 2.5 / 8.0).abs() < 1e-12);
        assert!((pooled[1].value[0] - 2.7 / 8.0).abs() < 1e-12);
        assert_eq!(pick_specific(&grid, &pooled, 0.0), vec![1.0]);
        // A surface with no group anywhere keeps the most shared value.
        let empty = HeldOutScore {
            value: vec![f64::NAN],
            denominator: vec![0.0],
            groups: vec![vec![]],
        };
        let both = HeldOutScore::pool([&empty, &empty]).expect("same surfaces");
        assert!(both.value[0].is_nan());
        assert_eq!(pick_specific(&grid, &[both.clone(), both], 0.0), vec![0.0]);
        assert!(HeldOutScore::pool(std::iter::empty()).is_none());
        let two = HeldOutScore {
            value: vec![0.0, 0.0],
            denominator: vec![1.0, 1.0],
            groups: vec![vec![0.0], vec![0.0]],
        };
        assert!(HeldOutScore::pool([&day1[0], &two]).is_none());
    }
}
