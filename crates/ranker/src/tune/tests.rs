//! Tests of the tuner: the protocol, the choice within one standard error,
//! the budget.

use super::*;
use crate::confidence::TrainingData;
use crate::topk::ItemTable;

fn trial(ndcg_users: Vec<f64>, candidate: Candidate) -> Trial {
    let n = ndcg_users.len() as f64;
    Trial {
        stage: "coarse",
        candidate,
        weighting: Weighting::Binary,
        pop_bias: 0.0,
        ndcg: ndcg_users.iter().sum::<f64>() / n,
        ndcg_se: se(&ndcg_users),
        recall: 0.0,
        hit_rate: 0.0,
        map: 0.0,
        seconds: 0.0,
        work: 0.0,
        users: ndcg_users,
    }
}

/// 60 users in two clean taste groups over 30 items, and its seeded 75/25
/// per-user split.
fn two_groups_split() -> (Csr, Split) {
    let m = crate::csr::two_taste_groups(60, 30, 8);
    let data = TrainingData {
        users: crate::ids::IdMap::from_ids((0..60).collect()),
        items: crate::ids::IdMap::from_ids((0..30).collect()),
        matrix: m.clone(),
    };
    (m, crate::split::split_random(&data, 0.25, 1))
}

#[test]
fn a_tie_within_one_standard_error_goes_to_the_simpler_model() {
    // 200 users; iALS is ahead by 0.002 on average with per-user noise
    // of 0.1: a tie on this evidence. EASE is chosen.
    let mut rng = crate::rng::SplitMix::new(3, 0, 0);
    let base: Vec<f64> = (0..200).map(|_| 0.3 + 0.1 * rng.centred() as f64).collect();
    let noise: Vec<f64> = (0..200).map(|_| 0.1 * rng.centred() as f64).collect();
    let ease = trial(base.clone(), Candidate::Ease { lambda: 100.0 });
    let ials_tie = trial(
        base.iter()
            .zip(&noise)
            .map(|(b, n)| b + 0.002 + n)
            .collect(),
        Candidate::Factorization(TrainParams::default()),
    );
    let trials = vec![ials_tie.clone(), ease.clone()];
    assert!(ials_tie.ndcg > ease.ndcg);
    assert_eq!(choose(&trials).map(|t| t.candidate.kind()), Some("ease"));
    // A clear win (every user better by 0.05) is not a tie.
    let ials_win = trial(
        base.iter().map(|b| b + 0.05).collect(),
        Candidate::Factorization(TrainParams::default()),
    );
    let trials = vec![ials_win, ease];
    assert_eq!(choose(&trials).map(|t| t.candidate.kind()), Some("ials"));
}

#[test]
fn popularity_within_one_standard_error_of_a_personal_model_is_not_kept() {
    // Popularity a little behind iALS on average (a tie on this evidence):
    // the non-personal baseline is no simpler model of the users' tastes,
    // so the better personal model is kept; best outright, it is.
    let mut rng = crate::rng::SplitMix::new(4, 0, 0);
    let base: Vec<f64> = (0..200).map(|_| 0.3 + 0.1 * rng.centred() as f64).collect();
    let noise: Vec<f64> = (0..200).map(|_| 0.1 * rng.centred() as f64).collect();
    let ials = trial(
        base.clone(),
        Candidate::Factorization(TrainParams::default()),
    );
    let behind: Vec<f64> = base
        .iter()
        .zip(&noise)
        .map(|(b, n)| b - 0.002 + n)
        .collect();
    let pop = trial(behind, Candidate::Popularity);
    assert!(within_one_se(&ials.users, &pop.users));
    let trials = vec![pop.clone(), ials.clone()];
    assert_eq!(choose(&trials).map(|t| t.candidate.kind()), Some("ials"));
    let ahead = trial(
        base.iter().map(|b| b + 0.001).collect(),
        Candidate::Popularity,
    );
    let trials = vec![ahead, ials];
    assert_eq!(
        choose(&trials).map(|t| t.candidate.kind()),
        Some("popularity")
    );
}

#[test]
fn a_noisy_poor_member_of_a_simple_kind_does_not_win() {
    // The best (a blend) beats a good iALS in one user only, and a poor
    // iALS by a little in many; EASE is far behind. The choice is the
    // good iALS: iALS's best is within one SE, EASE's is not.
    let n = 100;
    let mut best = vec![0.0; n];
    best[0] = 1.0;
    best[1] = 0.5;
    let mut good = best.clone();
    good[1] = 0.0;
    let poor: Vec<f64> = (0..n).map(|u| if u < 2 { 0.3 } else { 0.0 }).collect();
    let ease = vec![0.0; n];
    let ials = |v: Vec<f64>| trial(v, Candidate::Factorization(TrainParams::default()));
    let trials = vec![
        trial(
            best,
            Candidate::Blend {
                a: Box::new(Candidate::Ease { lambda: 1.0 }),
                b: Box::new(Candidate::Ease { lambda: 2.0 }),
                weight: 0.5,
            },
        ),
        ials(poor),
        ials(good.clone()),
        trial(ease, Candidate::Ease { lambda: 3.0 }),
    ];
    let chosen = choose(&trials).expect("a choice");
    assert_eq!(chosen.candidate.kind(), "ials");
    assert_eq!(chosen.users, good);
}

#[test]
fn weightings_map_counts_and_ratings() {
    let m = Csr::from_triplets(1, 3, &[0, 0, 0], &[0, 1, 2], &[0.0, 1.0, 100.0]);
    let row = |w: Weighting| w.apply(&m).row(0).1.to_vec();
    assert_eq!(row(Weighting::Binary), vec![1.0, 1.0, 1.0]);
    assert_eq!(row(Weighting::Linear), vec![0.0, 1.0, 100.0]);
    let log = row(Weighting::Log);
    assert_eq!(log[0], 1.0, "a rating of 0 is still an interaction");
    assert!((log[2] - (1.0 + 101f32.ln())).abs() < 1e-5);
    assert!("cubic".parse::<Weighting>().is_err());
}

#[test]
fn the_search_covers_every_kind_and_its_choice_trains() -> Result<()> {
    let (m, split) = two_groups_split();
    let opts = TuneOptions {
        algos: vec![Algo::Ease, Algo::Ials],
        weightings: vec![Weighting::Binary, Weighting::Log],
        budget: Duration::from_secs(20),
        ..TuneOptions::default()
    };
    let trials = tune(&split, &opts)?;
    for kind in ["popularity", "ease", "rp3beta", "ials", "blend"] {
        assert!(trials.iter().any(|t| t.candidate.kind() == kind), "{kind}");
    }
    assert!(trials.iter().any(|t| t.weighting == Weighting::Log));
    let chosen = choose(&trials).ok_or(crate::Error::Empty)?;
    // The choice is within one SE of the best and no more complex than any
    // other such trial.
    let best = trials
        .iter()
        .filter(|t| t.stage != CANDIDATE)
        .max_by(|a, b| a.ndcg.total_cmp(&b.ndcg))
        .ok_or(crate::Error::Empty)?;
    assert!(within_one_se(&best.users, &chosen.users));
    let f = fit_trial(chosen, &m, &opts)?;
    assert_eq!(f.n_items(), 30);
    // Two clean taste groups: the chosen model ranks a user's own group first.
    let table = ItemTable::new(f.dim, &f.items, Some(&f.item_bias));
    let top = table.top_k(f.user(0), 5, m.row(0).0);
    assert!(top.iter().all(|s| s.item < 15), "{top:?}");
    Ok(())
}

#[test]
fn a_catalogue_above_the_item_item_limit_is_tuned_without_ease() -> Result<()> {
    // Two taste groups over 30 items, then a long tail of single-interaction
    // items past EASE's limit (a Book-Crossing-like catalogue).
    let base = crate::csr::two_taste_groups(60, 30, 8);
    let n_items = crate::ease::EASE_MAX_ITEMS + 10;
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..60 {
        for &j in base.row(u).0 {
            r.push(u as u32);
            c.push(j);
            v.push(1.0);
        }
    }
    for j in 30..n_items {
        r.push((j % 60) as u32);
        c.push(j as u32);
        v.push(1.0);
    }
    let m = Csr::from_triplets(60, n_items, &r, &c, &v);
    let data = TrainingData {
        users: crate::ids::IdMap::from_ids((0..60).collect()),
        items: crate::ids::IdMap::from_ids((0..n_items as u64).collect()),
        matrix: m,
    };
    let split = crate::split::split_random(&data, 0.25, 1);
    let opts = TuneOptions {
        algos: vec![Algo::Ease, Algo::Ials],
        weightings: vec![Weighting::Binary],
        budget: Duration::from_secs(3),
        ..TuneOptions::default()
    };
    let trials = tune(&split, &opts)?;
    assert!(trials.iter().any(|t| t.candidate.kind() == "ials"));
    assert!(trials
        .iter()
        .all(|t| !matches!(t.candidate.kind(), "ease" | "rp3beta")));
    assert!(choose(&trials).is_some());
    Ok(())
}

#[test]
fn without_ease_ials_judges_the_weightings_itself() -> Result<()> {
    // Two taste groups with play counts, and a few binges across groups
    // (large counts): log weighting trusts the binges, binary does not.
    let base = crate::csr::two_taste_groups(60, 30, 8);
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..60usize {
        for &j in base.row(u).0 {
            r.push(u as u32);
            c.push(j);
            v.push(1.0 + (u + j as usize) as f32 % 3.0);
        }
        r.push(u as u32);
        c.push(((u * 7 + 15) % 30) as u32);
        v.push(500.0);
    }
    let m = Csr::from_triplets(60, 30, &r, &c, &v);
    let data = TrainingData {
        users: crate::ids::IdMap::from_ids((0..60).collect()),
        items: crate::ids::IdMap::from_ids((0..30).collect()),
        matrix: m,
    };
    let split = crate::split::split_random(&data, 0.25, 1);
    let opts = TuneOptions {
        algos: vec![Algo::Ials],
        weightings: vec![Weighting::Log, Weighting::Binary],
        budget: Duration::from_secs(20),
        ..TuneOptions::default()
    };
    let trials = tune(&split, &opts)?;
    let ials = |w: Weighting| {
        trials
            .iter()
            .filter(|t| t.candidate.kind() == "ials" && t.weighting == w)
            .count()
    };
    // Both weightings are judged (before, every iALS run took the first).
    assert!(ials(Weighting::Log) > 0 && ials(Weighting::Binary) > 0);
    // The search goes on with the weighting of the best coarse run.
    let best_coarse = trials
        .iter()
        .filter(|t| t.stage == "coarse" && t.candidate.kind() == "ials")
        .max_by(|a, b| a.ndcg.total_cmp(&b.ndcg))
        .ok_or(crate::Error::Empty)?;
    let refined: Vec<&Trial> = trials
        .iter()
        .filter(|t| t.stage == "refine" && t.candidate.kind() == "ials")
        .collect();
    assert!(!refined.is_empty());
    assert!(refined.iter().all(|t| t.weighting == best_coarse.weighting));
    Ok(())
}

#[test]
fn an_ease_basis_that_would_outlast_the_budget_is_not_started() -> Result<()> {
    // 3,000 users × 20,000 items (below EASE's item limit): a truncated
    // basis of 2,048 dimensions takes minutes here, far beyond a 3 s budget.
    // Before, EASE always ran first, whatever it cost.
    let (users, items) = (3_000usize, 20_000usize);
    let mut rng = crate::rng::SplitMix::new(5, 0, 0);
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..users {
        for _ in 0..6 {
            r.push(u as u32);
            c.push(((rng.centred() + 0.5) * items as f32) as u32 % items as u32);
            v.push(1.0);
        }
    }
    let m = Csr::from_triplets(users, items, &r, &c, &v);
    let data = TrainingData {
        users: crate::ids::IdMap::from_ids((0..users as u64).collect()),
        items: crate::ids::IdMap::from_ids((0..items as u64).collect()),
        matrix: m,
    };
    let split = crate::split::split_random(&data, 0.25, 1);
    let opts = TuneOptions {
        algos: vec![Algo::Ease, Algo::Ials],
        budget: Duration::from_secs(3),
        ..TuneOptions::default()
    };
    let trials = tune(&split, &opts)?;
    assert!(cost::ease_basis(users, items, opts.ease_dim) > 3.0);
    assert!(trials
        .iter()
        .all(|t| !matches!(t.candidate.kind(), "ease" | "rp3beta")));
    assert!(trials.iter().any(|t| t.candidate.kind() == "ials"));
    Ok(())
}

#[test]
fn above_the_cap_a_seeded_sample_of_validation_users_is_judged() -> Result<()> {
    let (_, split) = two_groups_split();
    let judged = |s: &Split| -> Vec<usize> {
        (0..s.test.n_rows())
            .filter(|&u| s.test.row_len(u) > 0)
            .collect()
    };
    let all = judged(&split);
    assert_eq!(all.len(), 60);
    assert!(judged_sample(&split, 60, 7).is_none());
    let a = judged_sample(&split, 10, 7).ok_or(crate::Error::Empty)?;
    let kept = judged(&a);
    assert_eq!(kept.len(), 10);
    // Each kept user's validation items as they were; training untouched.
    for &u in &kept {
        assert_eq!(a.test.row(u), split.test.row(u));
    }
    assert_eq!(a.train.matrix, split.train.matrix);
    assert_eq!(a.test.n_rows(), split.test.n_rows());
    // The same seed picks the same users; another seed, others.
    let again = judged_sample(&split, 10, 7).ok_or(crate::Error::Empty)?;
    assert_eq!(judged(&again), kept);
    let other = judged_sample(&split, 10, 8).ok_or(crate::Error::Empty)?;
    assert_ne!(judged(&other), kept);
    // Every trial of a search is judged on the sample, the same users each.
    let opts = TuneOptions {
        algos: vec![Algo::Ials],
        budget: Duration::from_secs(5),
        judged_users: 10,
        seed: 7,
        ..TuneOptions::default()
    };
    let trials = tune(&split, &opts)?;
    assert!(!trials.is_empty());
    assert!(trials.iter().all(|t| t.users.len() == 10));
    Ok(())
}

/// `users` × `items`, `per_user` interactions each: with probability
/// `taste` from the user's own half of the catalogue, else from a Zipf
/// popularity shared by everyone.
fn popular_with_taste(users: u32, items: u32, per_user: u32, taste: f64, seed: u64) -> Split {
    let mut rng = crate::rng::SplitMix::new(seed, 0, 0);
    let weights: Vec<f64> = (1..=items).map(|r| 1.0 / r as f64).collect();
    let total: f64 = weights.iter().sum();
    let (mut rows, mut cols) = (Vec::new(), Vec::new());
    for u in 0..users {
        let half = if u % 2 == 0 { 0 } else { items / 2 };
        for _ in 0..per_user {
            let item = if (rng.next_u64() as f64 / u64::MAX as f64) < taste {
                half + (rng.next_u64() % (items / 2) as u64) as u32
            } else {
                let mut x = rng.next_u64() as f64 / u64::MAX as f64 * total;
                let mut j = 0;
                while j + 1 < items as usize && x > weights[j] {
                    x -= weights[j];
                    j += 1;
                }
                j as u32
            };
            rows.push(u);
            cols.push(item);
        }
    }
    let vals = vec![1.0; rows.len()];
    let m = Csr::from_triplets(users as usize, items as usize, &rows, &cols, &vals);
    let data = TrainingData {
        users: crate::ids::IdMap::from_ids((0..users as u64).collect()),
        items: crate::ids::IdMap::from_ids((0..items as u64).collect()),
        matrix: m,
    };
    crate::split::split_random(&data, 0.25, 1)
}

#[test]
fn popularity_is_tried_and_loses_where_tastes_differ() -> Result<()> {
    let opts = TuneOptions {
        algos: vec![Algo::Ease, Algo::Ials],
        budget: Duration::from_secs(20),
        ..TuneOptions::default()
    };
    // Strong taste: popularity is tried and loses.
    let split = popular_with_taste(400, 120, 12, 0.9, 5);
    let trials = tune(&split, &opts)?;
    let pop = trials
        .iter()
        .find(|t| t.candidate == Candidate::Popularity)
        .ok_or(crate::Error::Empty)?;
    let chosen = choose(&trials).ok_or(crate::Error::Empty)?;
    assert_ne!(chosen.candidate.kind(), "popularity");
    assert!(
        chosen.ndcg > pop.ndcg + 2.0 * pop.ndcg_se,
        "{}",
        chosen.describe()
    );
    Ok(())
}

#[test]
fn a_fitted_model_is_scaled_as_the_search_scaled_its_lists() -> Result<()> {
    // A blend divides each part by a scale, and a compensation multiplies
    // β by one: the search measures it on its validation users' top lists,
    // the final fit on its own model. Both must be the same statistic, or
    // the blend and β fitted are not the ones judged.
    let split = popular_with_taste(400, 120, 12, 0.5, 7);
    let x = &split.train.matrix;
    let ials = TrainParams {
        factors: 8,
        epochs: 10,
        ..TrainParams::default()
    };
    let models = [
        popularity(x),
        crate::train(x, &ials.check()?, &mut TrainControl::default())?,
    ];
    for f in models {
        let fit = f.score_scale(x);
        let searched = Scorer::scale(&Scorer::Factors(f).lists(&split, POOL));
        assert!(
            (fit / searched - 1.0).abs() < 0.1,
            "fit {fit} vs search {searched}"
        );
    }
    Ok(())
}

#[test]
fn the_budget_cuts_the_search_at_the_same_setting_whatever_the_thread_count() -> Result<()> {
    // A budget that ends the search inside iALS's coarse grid: with the wall
    // clock deciding, one thread reached fewer settings than two (and a
    // loaded machine fewer than an idle one); with modeled work every run
    // tries the same settings and gets the same figures.
    let split = popular_with_taste(1_500, 2_000, 20, 0.6, 3);
    let opts = TuneOptions {
        algos: vec![Algo::Ials],
        weightings: vec![Weighting::Binary],
        budget: Duration::from_secs_f64(1.5),
        ..TuneOptions::default()
    };
    let run = |threads: usize| -> Result<Vec<Trial>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| crate::Error::InvalidInput(e.to_string()))?;
        pool.install(|| tune(&split, &opts))
    };
    let key = |trials: &[Trial]| -> Vec<(String, &'static str, u64, u64)> {
        trials
            .iter()
            .map(|t| (t.describe(), t.stage, t.ndcg.to_bits(), t.work.to_bits()))
            .collect()
    };
    let (one, two) = (run(1)?, run(2)?);
    assert_eq!(key(&one), key(&two));
    // The budget did cut the grid (28 coarse settings), after a few runs.
    let ials = one.iter().filter(|t| t.candidate.kind() == "ials").count();
    assert!((2..28).contains(&ials), "{ials} iALS settings");
    // What ran fits the budget's modeled seconds.
    let work: f64 = one.iter().map(|t| t.work).sum();
    assert!(work <= opts.budget.as_secs_f64(), "{work}");
    Ok(())
}
