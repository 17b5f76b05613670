//! Tests of the hierarchical model: the joint user step against the exact
//! solution, the two ends of the specific share, determinism, bad input.

use super::*;
use crate::params::TrainParams;
use crate::rng::SplitMix;
use crate::test_util::{on_threads, with_losses};

/// Checked shares of a three-surface model: the users' and the videos'.
pub(crate) fn shares(specific: Vec<f32>, item_specific: Vec<f32>) -> Result<ValidSurfaceParams> {
    SurfaceParams {
        specific,
        item_specific,
    }
    .check(3)
}

pub(crate) fn params(epochs: usize) -> ValidTrainParams {
    TrainParams {
        factors: 6,
        epochs,
        reg: 0.5,
        alpha: 4.0,
        cg_steps: 3,
        seed: 3,
        ..TrainParams::default()
    }
    .check()
    .expect("valid")
}

/// A planted world: `topics` item clusters; each user's taste on each of
/// `ns` surfaces is their base topic with probability `1 − divergence`,
/// else a topic of the surface's own; users watch items of their taste's
/// topic (and a little noise).
/// Topics and videos of the planted world.
pub(crate) const TOPICS: usize = 6;
pub(crate) const PER_TOPIC: usize = 40;

/// The planted world's impressions and each user's topic per surface.
pub(crate) fn planted_with_topics(
    users: usize,
    ns: usize,
    divergence: f64,
    seed: u64,
) -> (Vec<u64>, Vec<u8>, Vec<u64>, Vec<Vec<usize>>) {
    let unit = |rng: &mut SplitMix| rng.below(1 << 20) as f64 / (1u64 << 20) as f64;
    let (mut us, mut ss, mut is, mut topics) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for u in 0..users {
        let mut rng = SplitMix::new(seed, 7, u as u64);
        let base = rng.below(TOPICS as u64) as usize;
        // A user sees a video once, as a feed never shows a seen video again.
        let mut seen = std::collections::HashSet::new();
        let mut mine = Vec::new();
        for s in 0..ns {
            let topic = if unit(&mut rng) < divergence {
                rng.below(TOPICS as u64) as usize
            } else {
                base
            };
            mine.push(topic);
            let mut views = 0;
            while views < 8 {
                let t = if unit(&mut rng) < 0.1 {
                    rng.below(TOPICS as u64) as usize
                } else {
                    topic
                };
                let item = t * PER_TOPIC + rng.below(PER_TOPIC as u64) as usize;
                if !seen.insert(item) {
                    continue;
                }
                us.push(1000 + u as u64);
                ss.push(s as u8);
                is.push(item as u64);
                views += 1;
            }
        }
        topics.push(mine);
    }
    (us, ss, is, topics)
}

/// A planted world: `TOPICS` clusters of videos; each user's taste on
/// each of `ns` surfaces is their base topic with probability
/// `1 − divergence`, else a topic of the surface's own; users watch eight
/// distinct videos per surface, of their taste's topic (a tenth at random).
fn planted(users: usize, ns: usize, divergence: f64, seed: u64) -> (Vec<u64>, Vec<u8>, Vec<u64>) {
    let (us, ss, is, _) = planted_with_topics(users, ns, divergence, seed);
    (us, ss, is)
}

/// The exact solution of one row's joint problem by a dense solve: row `r`
/// of `conf` (rows `r · ns + s`), the other side's surface vectors `y`
/// (`(j · ns + s) · f`), its zeros' Gram per surface, and which surfaces
/// have a part (`shown`: a video's, else the surfaces with positives).
/// Returns the row's surface vectors (`a_s p` on surfaces a video was not
/// shown on, zeros on a user's surfaces without data).
#[allow(clippy::too_many_arguments)]
fn exact_row(
    conf: &Csr,
    y: &[f32],
    grams: &[Vec<f32>],
    specific: &[f32],
    shown: Option<u8>,
    p: &ValidTrainParams,
    ns: usize,
    u: usize,
) -> Vec<f32> {
    let f = p.factors;
    let a = shared_weights(specific);
    let has = |s: usize| shown.map_or(conf.row_len(u * ns + s) > 0, |m| m & (1 << s) != 0);
    // Unknowns: p, then δ_s for every surface with a part and φ > 0.
    let active: Vec<usize> = (0..ns).filter(|&s| has(s) && specific[s] > 0.0).collect();
    let n = (1 + active.len()) * f;
    let mut h = vec![0f64; n * n];
    let mut b = vec![0f64; n];
    for s in (0..ns).filter(|&s| has(s)) {
        let (items, c) = conf.row(u * ns + s);
        let mut am = vec![0f64; f * f];
        let mut bs = vec![0f64; f];
        for r in 0..f {
            for q in 0..f {
                am[r * f + q] = grams[s][r * f + q] as f64;
            }
        }
        for (&i, &ci) in items.iter().zip(c) {
            let at = (i as usize * ns + s) * f;
            let yi = &y[at..at + f];
            for r in 0..f {
                bs[r] += ci as f64 * yi[r] as f64;
                for q in 0..f {
                    am[r * f + q] += (ci as f64 - 1.0) * yi[r] as f64 * yi[q] as f64;
                }
            }
        }
        let blk = active.iter().position(|&x| x == s).map(|k| k + 1);
        let a = a[s] as f64;
        for r in 0..f {
            b[r] += a * bs[r];
            for q in 0..f {
                h[r * n + q] += a * a * am[r * f + q];
            }
        }
        if let Some(k) = blk {
            let reg = p.reg as f64 / specific[s] as f64;
            for r in 0..f {
                b[k * f + r] += bs[r];
                for q in 0..f {
                    h[(k * f + r) * n + k * f + q] += am[r * f + q];
                    h[r * n + k * f + q] += a * am[r * f + q];
                    h[(k * f + r) * n + q] += a * am[r * f + q];
                }
                h[(k * f + r) * n + k * f + r] += reg;
            }
        }
    }
    for r in 0..f {
        h[r * n + r] += p.reg as f64;
    }
    let hf: Vec<f32> = h.iter().map(|&x| x as f32).collect();
    let bf: Vec<f32> = b.iter().map(|&x| x as f32).collect();
    let x = crate::linalg::cholesky_solve(&hf, &bf).expect("positive definite");
    // As surface vectors.
    let mut w = vec![0f32; ns * f];
    for s in 0..ns {
        if shown.is_none() && !has(s) {
            continue;
        }
        for d in 0..f {
            w[s * f + d] = a[s] * x[d];
        }
        if let Some(k) = active.iter().position(|&x| x == s) {
            for d in 0..f {
                w[s * f + d] += x[(k + 1) * f + d];
            }
        }
    }
    w
}

#[test]
fn the_joint_user_step_reaches_the_exact_solution() -> Result<()> {
    let (us, ss, is) = planted(30, 3, 0.5, 1);
    let data = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0)?;
    let p = params(4);
    let f = p.factors;
    let mut rng = SplitMix::new(5, 0, 0);
    let y: Vec<f32> = (0..data.items.len() * f).map(|_| rng.centred()).collect();
    let z = on_every_surface(&y, f, 3);
    let conf = confidences(&data, &p);
    let grams: Vec<Vec<f32>> = (0..3)
        .map(|s| surface_gram(&z, f, 3, s, Some(&data.item_surfaces)))
        .collect();
    for specific in [
        [0.0, 0.0, 0.0],
        [0.3, 0.6, 1.0],
        [1.0, 1.0, 1.0],
        [0.5, 0.0, 0.2],
    ] {
        let sp = shares(specific.to_vec(), vec![0.0; 3])?;
        let (_, surface) = solve_surface_users(&data, &z, &p, &sp, None, 200)?;
        for u in [0, 7, 29] {
            let want = exact_row(&conf, &z, &grams, &specific, None, &p, 3, u);
            for s in 0..3 {
                if data.count(u, s) == 0 {
                    continue;
                }
                let got = &surface[(u * 3 + s) * f..(u * 3 + s + 1) * f];
                for (g, w) in got.iter().zip(&want[s * f..(s + 1) * f]) {
                    assert!(
                        (g - w).abs() < 2e-3 * (1.0 + w.abs()),
                        "{specific:?} u{u} s{s}: {g} vs {w}"
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn zero_share_is_one_shared_taste_and_full_share_independent_tastes() -> Result<()> {
    let (us, ss, is) = planted(40, 3, 0.5, 2);
    let data = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0)?;
    let p = params(6);
    let shared = train_surface_ials(
        &data,
        &p,
        &shares(vec![0.0; 3], vec![0.0; 3])?,
        &mut TrainControl::default(),
    )?;
    let f = p.factors;
    for u in 0..40 {
        for s in 0..3 {
            assert_eq!(
                shared.surface_user(u, s),
                shared.shared_user(u),
                "u{u} s{s}"
            );
        }
    }
    // φ = 0 is plain iALS on the pooled matrix when every item is shown everywhere.
    let all: Vec<u8> = vec![0b111; data.items.len()];
    let pooled_data = SurfaceData {
        item_surfaces: all,
        ..data.clone()
    };
    let a = train_surface_ials(
        &pooled_data,
        &p,
        &shares(vec![0.0; 3], vec![0.0; 3])?,
        &mut TrainControl::default(),
    )?;
    let plain = crate::als::train_ials(
        &pooled_data.pooled(),
        &TrainParams {
            cg_steps: 4,
            ..p.get().clone()
        }
        .check()?,
        &mut TrainControl::default(),
    )?;
    // Both converge to the same kind of model: compare their scores loosely.
    let score = |x: &[f32], y: &[f32]| dot(x, y);
    let mut agree = 0;
    let mut total = 0;
    for u in 0..40 {
        for i in (0..data.items.len()).step_by(5) {
            for j in (2..data.items.len()).step_by(7) {
                let s1 = score(a.shared_user(u), a.item(i)) > score(a.shared_user(u), a.item(j));
                let s2 = score(plain.user(u), plain.item(i)) > score(plain.user(u), plain.item(j));
                agree += (s1 == s2) as usize;
                total += 1;
            }
        }
    }
    assert!(agree as f64 > 0.85 * total as f64, "{agree}/{total}");
    // φ = 1: the shared part is unused (zero).
    let own = train_surface_ials(
        &data,
        &p,
        &shares(vec![1.0; 3], vec![0.0; 3])?,
        &mut TrainControl::default(),
    )?;
    assert!(own.shared.iter().all(|&x| x.abs() < 1e-6));
    assert!(own.surface.iter().any(|&x| x.abs() > 1e-3));
    let _ = f;
    Ok(())
}

#[test]
fn the_joint_item_step_reaches_the_exact_solution() -> Result<()> {
    let (us, ss, is) = planted(30, 3, 0.5, 4);
    let data = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0)?;
    let p = params(4);
    let f = p.factors;
    let ns = 3;
    let mut rng = SplitMix::new(6, 0, 0);
    // Users' surface vectors, zero where a user has no data (training state).
    let mut w: Vec<f32> = (0..data.users.len() * ns * f)
        .map(|_| rng.centred())
        .collect();
    clear_missing(&data, f, &mut w);
    let sides = Sides::new(&data, &p);
    let grams: Vec<Vec<f32>> = (0..ns).map(|s| surface_gram(&w, f, ns, s, None)).collect();
    // Every share 0 goes through the joint solver too when only some videos
    // are solved (as choosing the shares does); the rest keep their rows.
    let ni = data.items.len();
    let only: Vec<bool> = (0..ni).map(|i| i % 2 == 0).collect();
    for (psi, only) in [
        ([0.3, 0.6, 1.0], None),
        ([1.0, 1.0, 1.0], None),
        ([0.5, 0.0, 0.2], None),
        ([0.0, 0.0, 0.0], Some(only.as_slice())),
    ] {
        let mut q = vec![0f32; ni * f];
        let mut z = vec![0f32; ni * ns * f];
        item_step(
            Isa::detect(),
            &data,
            &sides,
            &w,
            &[Shares::new(&psi)],
            &p,
            200,
            only,
            &mut q,
            &mut z,
        );
        for i in [0, 5, 17, 18, ni - 1] {
            let mask = data.item_surfaces[i];
            if only.is_some_and(|o| !o[i]) {
                assert!(z[i * ns * f..(i + 1) * ns * f].iter().all(|&x| x == 0.0));
                continue;
            }
            let want = exact_row(sides.items(), &w, &grams, &psi, Some(mask), &p, ns, i);
            let got = &z[i * ns * f..(i + 1) * ns * f];
            for (k, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() < 2e-3 * (1.0 + e.abs()),
                    "{psi:?} item {i} (shown {mask:03b}) at {k}: {g} vs {e}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn one_pass_over_several_shares_solves_each_as_alone() -> Result<()> {
    // Choosing the shares solves every value of the grid in one pass over the
    // rows; each set's vectors must be those of a pass with that set alone,
    // on both sides.
    let (us, ss, is) = planted(40, 3, 0.5, 9);
    let data = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0)?;
    let p = params(3);
    let (f, ns) = (p.factors, 3);
    let start = train_surface_ials(
        &data,
        &p,
        &shares(vec![0.3; 3], vec![0.5; 3])?,
        &mut TrainControl::default(),
    )?;
    let sets = [
        vec![0.0, 0.0, 0.0],
        vec![0.1, 0.5, 1.0],
        vec![1.0, 0.25, 0.0],
    ];
    let only: Vec<bool> = (0..data.users.len()).map(|u| u % 3 != 1).collect();
    let start_users = Some((&start.shared[..], &start.surface[..]));
    let together = solve_some_users(
        &data,
        &start.surface_items,
        &p,
        &sets,
        start_users,
        4,
        Some(&only),
    )?;
    assert_eq!(together.len(), sets.len());
    // One set alone multiplies by the rows, several by each part's Hessian
    // built once: the same problems and CG steps, rounded otherwise.
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what} [{i}]: {x} vs {y}"
            );
        }
    };
    for (set, got) in sets.iter().zip(&together) {
        let alone = solve_some_users(
            &data,
            &start.surface_items,
            &p,
            std::slice::from_ref(set),
            start_users,
            4,
            Some(&only),
        )?;
        close(
            &got.0,
            &alone[0].0,
            &format!("users' shared vectors, shares {set:?}"),
        );
        close(
            &got.1,
            &alone[0].1,
            &format!("users' surface vectors, shares {set:?}"),
        );
    }
    // The sets' solutions differ by far more than the tolerance, so a slot
    // mix-up could not pass unseen.
    let apart = together[0]
        .1
        .iter()
        .zip(&together[1].1)
        .map(|(a, b)| (a - b).abs());
    assert!(apart.fold(0f32, f32::max) > 1e-2);

    let sides = Sides::new(&data, &p);
    let judged: Vec<bool> = (0..data.items.len()).map(|i| i % 2 == 0).collect();
    let k = sets.len();
    let (mut q, mut z) = (
        repeat_rows(&start.items, f, k),
        repeat_rows(&start.surface_items, ns * f, k),
    );
    let all: Vec<Shares> = sets.iter().map(|s| Shares::new(s)).collect();
    let isa = Isa::detect();
    item_step(
        isa,
        &data,
        &sides,
        &start.surface,
        &all,
        &p,
        3,
        Some(&judged),
        &mut q,
        &mut z,
    );
    for (j, set) in sets.iter().enumerate() {
        let (mut q1, mut z1) = (start.items.clone(), start.surface_items.clone());
        let one = [Shares::new(set)];
        item_step(
            isa,
            &data,
            &sides,
            &start.surface,
            &one,
            &p,
            3,
            Some(&judged),
            &mut q1,
            &mut z1,
        );
        close(
            &slot_rows(&q, f, k, j),
            &q1,
            &format!("videos' shared vectors, shares {set:?}"),
        );
        close(
            &slot_rows(&z, ns * f, k, j),
            &z1,
            &format!("videos' surface vectors, {set:?}"),
        );
    }
    Ok(())
}

/// Surface 1's data replaced by another draw, the users, items and the
/// other surfaces' data unchanged.
fn with_other_surface_one(data: &SurfaceData, seed: u64) -> SurfaceData {
    let (us, ss, is) = planted(40, 3, 1.0, seed);
    let other = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0).expect("valid");
    let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
    let mut masks = data.item_surfaces.clone();
    masks.iter_mut().for_each(|m| *m &= !0b010);
    for u in 0..data.users.len() {
        for s in 0..3 {
            let (src, r) = if s == 1 {
                let Some(o) = other.users.get(data.users.id(u as u32)) else {
                    continue;
                };
                (&other, o as usize * 3 + 1)
            } else {
                (data, u * 3 + s)
            };
            let (c, v) = src.matrix.row(r);
            for (&i, &x) in c.iter().zip(v) {
                // Only the items the first data knows, so the indices agree.
                if let Some(col) = data.items.get(src.items.id(i)) {
                    rows.push((u * 3 + s) as u32);
                    cols.push(col);
                    vals.push(x);
                    masks[col as usize] |= 1 << s;
                }
            }
        }
    }
    SurfaceData {
        matrix: Csr::from_triplets(data.users.len() * 3, data.items.len(), &rows, &cols, &vals),
        item_surfaces: masks,
        ..data.clone()
    }
}

#[test]
fn full_share_with_specific_items_is_one_model_per_surface() -> Result<()> {
    // Tastes independent per surface. With φ = 1 and a vector per video per
    // surface, surface 0's model depends on surface 0's data alone: another
    // draw of surface 1 leaves it as it was. With one vector per video it
    // does not (surface 1's users move the videos' vectors).
    let (us, ss, is) = planted(40, 3, 1.0, 8);
    let data = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0)?;
    let changed = with_other_surface_one(&data, 9);
    assert_ne!(changed.matrix, data.matrix);
    let p = TrainParams {
        cg_steps: 60,
        epochs: 3,
        ..params(3).get().clone()
    }
    .check()?;
    let mut gaps = Vec::new();
    for item_share in [1.0, 0.0] {
        let sp = shares(vec![1.0; 3], vec![item_share; 3])?;
        let a = train_surface_ials(&data, &p, &sp, &mut TrainControl::default())?;
        let b = train_surface_ials(&changed, &p, &sp, &mut TrainControl::default())?;
        let mut gap = 0f32;
        for u in 0..40 {
            for i in 0..data.items.len() {
                if data.item_surfaces[i] & 1 == 0 || data.count(u, 0) == 0 {
                    continue;
                }
                let sa = dot(a.surface_user(u, 0), a.surface_item(i, 0));
                let sb = dot(b.surface_user(u, 0), b.surface_item(i, 0));
                gap = gap.max((sa - sb).abs());
            }
        }
        gaps.push(gap);
    }
    assert!(
        gaps[0] < 1e-3,
        "specific items: surface 0 moved by {gaps:?}"
    );
    assert!(
        gaps[1] > 1e-2,
        "shared items: surface 0 did not move {gaps:?}"
    );
    Ok(())
}

#[test]
fn loss_decreases_and_the_same_model_for_any_thread_count() -> Result<()> {
    for item_specific in [[0.0; 3], [0.5, 0.0, 1.0]] {
        loss_decreases_and_is_deterministic(item_specific.to_vec())?;
    }
    Ok(())
}

fn loss_decreases_and_is_deterministic(item_specific: Vec<f32>) -> Result<()> {
    let (us, ss, is) = planted(60, 3, 0.4, 3);
    let data = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0)?;
    let sp = SurfaceParams {
        specific: vec![0.4, 0.2, 0.7],
        item_specific,
    }
    .check(3)?;
    let (fac, losses) = with_losses(|c| train_surface_ials(&data, &params(8), &sp, c))?;
    assert!(losses[7] < losses[0], "{losses:?}");
    assert!(losses.windows(2).all(|w| w[1] <= w[0] * 1.01), "{losses:?}");
    let run = |t| {
        on_threads(t, || {
            train_surface_ials(&data, &params(8), &sp, &mut TrainControl::default())
        })
    };
    assert_eq!(run(1)?, fac);
    assert_eq!(run(3)?, fac);
    Ok(())
}

#[test]
fn bad_inputs_are_errors() {
    assert!(SurfaceParams {
        specific: vec![0.5, 1.5],
        item_specific: vec![0.0; 2],
    }
    .check(2)
    .is_err());
    assert!(SurfaceParams {
        specific: vec![0.5],
        item_specific: vec![0.0; 3],
    }
    .check(2)
    .is_err());
    assert!(SurfaceParams {
        specific: vec![f32::NAN, 0.0],
        item_specific: vec![0.0; 2],
    }
    .check(2)
    .is_err());
    for bad in [vec![0.5], vec![0.0, -0.1], vec![0.0, f32::NAN]] {
        assert!(SurfaceParams {
            specific: vec![0.5, 0.5],
            item_specific: bad,
        }
        .check(2)
        .is_err());
    }
    assert!(SurfaceParams {
        specific: vec![0.5, 0.5],
        item_specific: vec![0.0, 1.0],
    }
    .check(2)
    .is_ok());
    assert!(SurfaceData::from_triplets(&[1], &[3], &[2], None, 3, 0.0).is_err());
    assert!(SurfaceData::from_triplets(&[1], &[0], &[2], None, 9, 0.0).is_err());
    assert!(SurfaceData::from_triplets(&[1, 2], &[0], &[2, 3], None, 3, 0.0).is_err());
    assert!(SurfaceData::from_triplets(&[1], &[0], &[2], Some(&[f32::NAN]), 3, 0.0).is_err());
}

/// A model file of a fit whose videos have vectors of their surfaces' own
/// (ψ > 0) scores every user on every surface against those vectors, read
/// back from the file: what `recommend --surface` and the server rank by.
/// (Written with the shared video vectors alone, the watch scores differ.)
#[test]
fn a_model_file_scores_each_surface_with_its_own_video_vectors() -> Result<()> {
    let (us, ss, is) = planted(30, 3, 1.0, 5);
    let data = SurfaceData::from_triplets(&us, &ss, &is, None, 3, 0.0)?;
    let dir = tempfile::tempdir().map_err(|e| Error::InvalidInput(e.to_string()))?;
    let path = dir.path().join("m.arrow");
    let names = ["reels", "feed", "watch"];
    for item_specific in [vec![0.0, 0.5, 1.0], vec![0.0; 3]] {
        let sp = shares(vec![0.5; 3], item_specific.clone())?;
        let fac = train_surface_ials(&data, &params(2), &sp, &mut TrainControl::default())?;
        let model =
            crate::Model::from_surfaces(&data, fac.clone(), &names, params(2).get().clone())?;
        model.save(&path)?;
        let back = crate::MappedModel::open(&path)?;
        let own = item_specific.iter().filter(|&&x| x > 0.0).count();
        let wide = 6 * (1 + own);
        assert_eq!(back.dim, wide);
        assert_eq!(
            back.meta.item_specific,
            (own > 0).then(|| item_specific.clone())
        );
        let sv = back.surfaces.as_ref().expect("surface vectors");
        let row = |v: &[f32], r: usize| v[r * wide..(r + 1) * wide].to_vec();
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * (1.0 + b.abs());
        let mut moved = 0f32;
        for u in 0..data.users.len() {
            for i in 0..data.items.len() {
                let item = row(&back.item_factors, i);
                let shared = dot(&row(&back.user_factors, u), &item);
                assert!(close(shared, dot(fac.shared_user(u), fac.item(i))));
                for s in 0..3 {
                    let got = dot(&row(&sv.vectors[s], u), &item);
                    let want = dot(fac.surface_user(u, s), fac.surface_item(i, s));
                    assert!(
                        close(got, want),
                        "user {u} item {i} surface {s}: {got} vs {want}"
                    );
                    moved = moved.max((want - dot(fac.surface_user(u, s), fac.item(i))).abs());
                }
            }
        }
        // The check can fail: with ψ > 0 the surfaces' own video vectors
        // change the scores (and with ψ = 0 they are the shared ones).
        assert_eq!(moved > 1e-3, own > 0, "{item_specific:?}: {moved}");
        // Shares above 0 without their vectors: refused, not served as
        // another model.
        let bare = SurfaceFactors {
            surface_items: Vec::new(),
            ..fac
        };
        let refused =
            crate::Model::from_surfaces(&data, bare, &names, params(2).get().clone()).is_err();
        assert_eq!(refused, own > 0);
    }
    Ok(())
}
