//! Tests of the index: recall, exactness, determinism, updates, files.

use super::search::merge_probes;
use super::*;
use crate::error::{Error, Result};
use crate::rng::SplitMix;
use crate::test_util::on_threads;
use crate::top::Scored;
use crate::topk::ItemTable;

/// `n` items around `centres` random centres (un-normalised: each item
/// scaled by a factor in [0.5, 2)), biases in [-0.25, 0.25); and queries
/// drawn the same way.
fn clustered(n: usize, dim: usize, centres: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix::new(seed, 1, 2);
    let c: Vec<f32> = (0..centres * dim).map(|_| 2.0 * rng.centred()).collect();
    let mut x = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let k = rng.below(centres as u64) as usize;
        let scale = 0.5 + 1.5 * (rng.centred() + 0.5);
        for d in 0..dim {
            x.push(scale * (c[k * dim + d] + 0.35 * rng.centred()));
        }
    }
    let b = (0..n).map(|_| 0.5 * rng.centred()).collect();
    (x, b)
}

fn queries(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let (q, _) = clustered(n, dim, 64, seed);
    q.chunks(dim).map(<[f32]>::to_vec).collect()
}

/// Lists the first round of `q`'s probe takes.
fn lists_planned(index: &IvfIndex, q: &IvfQuery<'_>) -> usize {
    index.plan(q, index.coarse(q, index.nlist())).lists.len()
}

fn plain<'a>(qs: &'a [Vec<f32>], k: usize) -> Vec<IvfQuery<'a>> {
    qs.iter()
        .map(|v| IvfQuery {
            vector: v,
            k,
            exclude: &[],
            filter: None,
        })
        .collect()
}

#[test]
fn the_8_bit_probe_ranks_lists_as_the_f32_probe_table() -> Result<()> {
    // Items of norms spread 4× with biases, queries of other norms: the
    // 8-bit tables code the item part and bias, the rest is per-list.
    let (n, dim) = (30_000, 24);
    for with_bias in [true, false] {
        let (x, b) = clustered(n, dim, 64, 21);
        let t = ItemTable::new(dim, &x, with_bias.then_some(&b[..]));
        let index = IvfIndex::build(&t, &IvfParams::default())?;
        let exact = index.probe_table();
        let qs = queries(150, dim, 22);
        for (j, q) in qs.iter().enumerate() {
            let q: Vec<f32> = q.iter().map(|v| v * (0.3 + 0.02 * j as f32)).collect();
            let points = index.probe_points(&q, Order::Both);
            for m in [1, 6, 40, index.nlist()] {
                let got = index.rank_points(&points, m);
                for (kind, g) in got.iter().enumerate() {
                    assert_eq!(points[kind].0, kind);
                    let want = exact.top_k(&points[kind].1, m, &[]);
                    assert_eq!(g, &want, "bias {with_bias}, query {j}, kind {kind}, m {m}");
                }
            }
        }
    }
    Ok(())
}

#[test]
fn recall_holds_on_unnormalised_vectors_with_biases_and_scores_are_exact() -> Result<()> {
    let (n, dim, k) = (20_000, 16, 50);
    let (x, b) = clustered(n, dim, 64, 3);
    let t = ItemTable::new(dim, &x, Some(&b));
    let mut index = IvfIndex::build(&t, &IvfParams::default())?;
    assert_eq!(index.len(), n);
    assert!(index.nlist() > 100, "{} lists", index.nlist());
    let sample = queries(100, dim, 4);
    let refs: Vec<&[f32]> = sample.iter().map(Vec::as_slice).collect();
    let (nprobe, r) = index.tune_nprobe(&t, &refs, k, 0.95)?;
    assert!(
        r >= 0.95 && nprobe < index.nlist() / 4,
        "nprobe {nprobe}, recall {r}"
    );
    // Fresh queries: recall holds, and the scores are the exact ones.
    let qs = queries(200, dim, 5);
    let got = index.search(&t, &plain(&qs, k))?;
    let refs: Vec<&[f32]> = qs.iter().map(Vec::as_slice).collect();
    let truth = t.top_k_batch(&refs, &vec![k; qs.len()], &vec![&[][..]; qs.len()]);
    let r = recall(&got, &truth);
    assert!(r >= 0.93, "recall {r} on fresh queries");
    for (g, q) in got.iter().zip(&qs) {
        assert_eq!(g.len(), k);
        let ids: Vec<u32> = g.iter().map(|s| s.item).collect();
        let want = t.scores_of(q, &ids);
        for (s, w) in g.iter().zip(want) {
            assert_eq!(s.score.to_bits(), w.to_bits());
        }
        assert!(g.windows(2).all(|w| w[0].score >= w[1].score));
    }
    // Scanning a small share of the catalogue, not all of it.
    let probed = lists_planned(&index, &plain(&qs, k)[0]);
    assert!(
        probed * 8 < index.nlist(),
        "{probed} of {} lists",
        index.nlist()
    );
    Ok(())
}

#[test]
fn results_do_not_depend_on_threads_or_batching() -> Result<()> {
    let (n, dim, k) = (6_000, 12, 20);
    let (x, b) = clustered(n, dim, 32, 8);
    let t = ItemTable::new(dim, &x, Some(&b));
    let qs = queries(150, dim, 9);
    let run = |threads: usize| -> Result<(IvfIndex, Vec<Vec<Scored>>)> {
        on_threads(threads, || {
            let index = IvfIndex::build(&t, &IvfParams::default())?;
            let r = index.search(&t, &plain(&qs, k))?;
            Ok((index, r))
        })
    };
    let (a, ra) = run(1)?;
    let (bb, rb) = run(3)?;
    assert_eq!(a.centroids, bb.centroids);
    assert_eq!(a.item_list, bb.item_list);
    assert_eq!(ra, rb);
    for (q, want) in plain(&qs, k).iter().zip(&ra).take(20) {
        assert_eq!(&a.search_one(&t, q)?, want);
    }
    Ok(())
}

#[test]
fn exclusions_and_a_selective_filter_keep_recall() -> Result<()> {
    let (n, dim, k) = (30_000, 16, 100);
    let (x, b) = clustered(n, dim, 64, 11);
    let t = ItemTable::new(dim, &x, Some(&b));
    let mut index = IvfIndex::build(&t, &IvfParams::default())?;
    let qs = queries(60, dim, 12);
    let refs: Vec<&[f32]> = qs.iter().map(Vec::as_slice).collect();
    index.tune_nprobe(&t, &refs, k, 0.95)?;
    // A "surface" keeping a fifth of the catalogue (by a hash of the id).
    let keep = |i: u32| (i.wrapping_mul(2_654_435_761) >> 7).is_multiple_of(5);
    let filter = index.filter(keep);
    assert!((filter.allowed() as f64 / n as f64 - 0.2).abs() < 0.02);
    // Each user excludes 1,000 videos: the 500 best for them and 500 others.
    let all = t.top_k_batch(&refs, &vec![500; qs.len()], &vec![&[][..]; qs.len()]);
    let excludes: Vec<Vec<u32>> = all
        .iter()
        .enumerate()
        .map(|(j, top)| {
            let mut e: Vec<u32> = top.iter().map(|s| s.item).collect();
            e.extend((0..500).map(|m| ((j * 7919 + m * 104_729) % n) as u32));
            e.sort_unstable();
            e.dedup();
            e
        })
        .collect();
    let iq: Vec<IvfQuery<'_>> = qs
        .iter()
        .zip(&excludes)
        .map(|(v, e)| IvfQuery {
            vector: v,
            k,
            exclude: e,
            filter: Some(&filter),
        })
        .collect();
    let got = index.search(&t, &iq)?;
    // The truth: the exact top-k among allowed, non-excluded items.
    let truth: Vec<Vec<Scored>> = qs
        .iter()
        .zip(&excludes)
        .map(|(q, e)| {
            let mut ex: Vec<u32> = (0..n as u32).filter(|&i| !keep(i)).collect();
            ex.extend(e);
            ex.sort_unstable();
            ex.dedup();
            t.top_k(q, k, &ex)
        })
        .collect();
    for (g, e) in got.iter().zip(&excludes) {
        assert_eq!(g.len(), k);
        assert!(g
            .iter()
            .all(|s| keep(s.item) && e.binary_search(&s.item).is_err()));
    }
    let r = recall(&got, &truth);
    assert!(r >= 0.95, "filtered recall {r}");
    // The probe widened: about five times the unfiltered lists.
    let wide = lists_planned(&index, &iq[0]);
    assert!(
        wide >= 4 * index.nprobe(),
        "{wide} lists for nprobe {}",
        index.nprobe()
    );
    Ok(())
}

#[test]
fn added_items_are_found_without_a_rebuild() -> Result<()> {
    let (n, dim, k) = (30_000, 16, 100);
    let (x, b) = clustered(n, dim, 64, 21);
    let old = n * 99 / 100;
    let base = ItemTable::new(dim, &x[..old * dim], Some(&b[..old]));
    let mut index = IvfIndex::build(&base, &IvfParams::default())?;
    let qs = queries(300, dim, 22);
    let refs: Vec<&[f32]> = qs.iter().map(Vec::as_slice).collect();
    index.tune_nprobe(&base, &refs[..60], k, 0.95)?;
    let first = index.add(&base, &x[old * dim..], Some(&b[old..]))?;
    assert_eq!(first as usize, old);
    assert_eq!(index.len(), n);
    let full = ItemTable::new(dim, &x, Some(&b));
    let truth = full.top_k_batch(&refs, &vec![k; qs.len()], &vec![&[][..]; qs.len()]);
    let got = index.search(&base, &plain(&qs, k))?;
    // Queries whose true top-k holds new items.
    let with_new: Vec<usize> = (0..qs.len())
        .filter(|&j| truth[j].iter().any(|s| s.item as usize >= old))
        .collect();
    assert!(with_new.len() >= 30, "{} queries", with_new.len());
    let g: Vec<Vec<Scored>> = with_new.iter().map(|&j| got[j].clone()).collect();
    let w: Vec<Vec<Scored>> = with_new.iter().map(|&j| truth[j].clone()).collect();
    let r = recall(&g, &w);
    assert!(r >= 0.95, "recall {r} where new items belong");
    // New items are scored exactly too.
    for (gj, wj) in g.iter().zip(&w) {
        for s in gj.iter().filter(|s| s.item as usize >= old) {
            if let Some(t) = wj.iter().find(|t| t.item == s.item) {
                assert_eq!(t.score.to_bits(), s.score.to_bits());
            }
        }
    }
    Ok(())
}

#[test]
fn rebalancing_splits_lists_that_fresh_items_crowded() -> Result<()> {
    let (n, dim, k) = (10_000, 8, 20);
    let (x, b) = clustered(n, dim, 32, 31);
    let t = ItemTable::new(dim, &x, Some(&b));
    let mut index = IvfIndex::build(&t, &IvfParams::default())?;
    let built = index.nlist();
    let longest_built = index.lists.iter().map(|l| l.ids.len()).max().unwrap_or(0);
    // 3,000 fresh items near one point, in batches: without splitting,
    // one list would hold them all (10× the longest built list).
    let mut rng = SplitMix::new(5, 5, 5);
    let centre: Vec<f32> = x[..dim].to_vec();
    let fresh: Vec<f32> = (0..3_000 * dim)
        .map(|j| centre[j % dim] + 0.05 * rng.centred())
        .collect();
    for batch in fresh.chunks(500 * dim) {
        index.add(&t, batch, None)?;
    }
    let longest = index.lists.iter().map(|l| l.ids.len()).max().unwrap_or(0);
    assert!(index.nlist() > built, "add split the crowded list");
    assert!(
        longest <= 2 * longest_built,
        "{longest} items in a list, {longest_built} at build"
    );
    // A manual rebalance to a tighter bound.
    let lists = index.nlist();
    let split = index.rebalance(&t, 2.0)?;
    assert!(index.nlist() == lists + split);
    let mean = index.len() as f64 / lists as f64;
    let longest = index.lists.iter().map(|l| l.ids.len()).max().unwrap_or(0);
    assert!(
        longest as f64 <= 2.0 * mean || longest < 2 * PANEL,
        "{longest} items in a list, mean {mean}"
    );
    // Every item is still in exactly one list, the one item_list names.
    let mut seen = vec![0u8; index.len()];
    for (l, list) in index.lists.iter().enumerate() {
        assert_eq!(list.ids.len(), list.codes.len());
        for &i in &list.ids {
            seen[i as usize] += 1;
            assert_eq!(index.item_list[i as usize] as usize, l);
        }
    }
    assert!(seen.iter().all(|&s| s == 1));
    // And queries still find the crowd.
    let mut all = x.clone();
    all.extend_from_slice(&fresh);
    let mut ball = b.clone();
    ball.resize(index.len(), 0.0);
    let full = ItemTable::new(dim, &all, Some(&ball));
    let q = vec![centre.clone()];
    let got = index.search(&t, &plain(&q, k))?;
    let truth = vec![full.top_k(&centre, k, &[])];
    assert!(recall(&got, &truth) >= 0.9);
    Ok(())
}

#[test]
fn wrong_tables_and_queries_are_errors() -> Result<()> {
    let (x, b) = clustered(2_000, 8, 8, 41);
    let t = ItemTable::new(8, &x, Some(&b));
    let index = IvfIndex::build(&t, &IvfParams::default())?;
    let other = ItemTable::new(8, &x[..800], None);
    let q = vec![0.5f32; 8];
    let iq = IvfQuery {
        vector: &q,
        k: 5,
        exclude: &[],
        filter: None,
    };
    assert!(
        matches!(index.search_one(&other, &iq), Err(Error::InvalidInput(m)) if m.contains("2000 items"))
    );
    let short = [1.0f32; 7];
    let bad = IvfQuery {
        vector: &short,
        ..iq
    };
    assert!(index.search(&t, &[iq, bad]).is_err());
    assert!(IvfIndex::build(&ItemTable::new(8, &[], None), &IvfParams::default()).is_err());
    let zero = IvfParams {
        nprobe: 0,
        ..IvfParams::default()
    };
    assert!(matches!(
        IvfIndex::build(&t, &zero),
        Err(Error::InvalidParam {
            field: "nprobe",
            ..
        })
    ));
    let mut index = index;
    assert!(index.add(&t, &[1.0; 7], None).is_err());
    assert!(index.add(&other, &[1.0; 8], None).is_err(), "another table");
    assert!(matches!(
        index.add(&t, &[f32::NAN; 8], None),
        Err(Error::NotFinite { .. })
    ));
    assert_eq!(index.len(), 2_000, "a refused add adds nothing");
    Ok(())
}

/// An index over 20,000 clustered items with a tuned depth table, 200
/// added items, and queries with a filter and exclusions.
type Fixture = (Vec<f32>, Vec<f32>, IvfIndex, Vec<Vec<f32>>);

fn saved_fixture() -> Result<Fixture> {
    let (n, dim) = (20_000, 16);
    let (x, b) = clustered(n, dim, 64, 51);
    let t = ItemTable::new(dim, &x, Some(&b));
    let mut index = IvfIndex::build(&t, &IvfParams::default())?;
    let qs = queries(120, dim, 52);
    let refs: Vec<&[f32]> = qs.iter().map(Vec::as_slice).collect();
    index.tune_nprobe(&t, &refs[..60], 50, 0.95)?;
    let (fresh, _) = clustered(200, dim, 64, 53);
    index.add(&t, &fresh, Some(&vec![0.25; 200]))?;
    Ok((x, b, index, qs))
}

#[test]
fn a_saved_index_loads_and_answers_exactly_as_the_built_one() -> Result<()> {
    let (x, b, index, qs) = saved_fixture()?;
    let t = ItemTable::new(16, &x, Some(&b));
    let dir = tempfile::tempdir().map_err(|e| Error::InvalidInput(e.to_string()))?;
    let path = dir.path().join("m.arrow.ivf");
    index.save(&path)?;
    let back = IvfIndex::load(&path, &t)?;
    assert_eq!(
        (back.nlist(), back.len(), back.nprobe(), back.bytes()),
        (index.nlist(), index.len(), index.nprobe(), index.bytes())
    );
    // Every setting and tuned table comes back as saved.
    assert_eq!(back.tuning, index.tuning);
    assert!(
        !index.tuning.depths.is_empty(),
        "the tuned tables are saved"
    );
    let filter = index.filter(|i| i % 3 == 0);
    let filter_back = back.filter(|i| i % 3 == 0);
    let ex: Vec<u32> = (0..400).map(|i| i * 7).collect();
    for (f, fb) in [(None, None), (Some(&filter), Some(&filter_back))] {
        let mk = |filter| -> Vec<IvfQuery<'_>> {
            qs.iter()
                .enumerate()
                .map(|(j, v)| IvfQuery {
                    vector: v,
                    k: 50,
                    exclude: if j % 2 == 0 { &ex[..] } else { &[] },
                    filter,
                })
                .collect()
        };
        let want = index.search(&t, &mk(f))?;
        assert_eq!(back.search(&t, &mk(fb))?, want);
        assert!(
            want.iter().flatten().any(|s| s.item as usize >= 20_000),
            "added items are found after the load too"
        );
    }
    Ok(())
}

#[test]
fn a_stale_truncated_foreign_or_future_index_file_is_refused() -> Result<()> {
    let (x, b, index, _) = saved_fixture()?;
    let t = ItemTable::new(16, &x, Some(&b));
    let dir = tempfile::tempdir().map_err(|e| Error::InvalidInput(e.to_string()))?;
    let path = dir.path().join("m.arrow.ivf");
    index.save(&path)?;
    let refused = |p: &std::path::Path, t: &ItemTable<'_>, what: &str| match IvfIndex::load(p, t) {
        Err(Error::InvalidIndex { reason, .. }) => {
            assert!(reason.contains(what), "{reason}")
        }
        other => panic!("{what}: {other:?}"),
    };
    // Another model: one value differs.
    let mut y = x.clone();
    y[12_345] += 1e-3;
    refused(&path, &ItemTable::new(16, &y, Some(&b)), "stale");
    refused(
        &path,
        &ItemTable::new(16, &x[..16 * 19_000], Some(&b[..19_000])),
        "has 19000",
    );
    refused(&path, &ItemTable::new(16, &x, None), "biases");
    // Truncated anywhere, or bytes flipped: an error, never a panic.
    let bytes = std::fs::read(&path).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let cut = dir.path().join("cut.ivf");
    for len in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).map_err(|e| Error::InvalidInput(e.to_string()))?;
        assert!(
            matches!(IvfIndex::load(&cut, &t), Err(Error::InvalidIndex { .. })),
            "cut at {len}"
        );
    }
    let mut rng = SplitMix::new(9, 9, 9);
    for _ in 0..40 {
        let mut b2 = bytes.clone();
        let at = rng.below(b2.len() as u64) as usize;
        b2[at] ^= 0x5a;
        std::fs::write(&cut, &b2).map_err(|e| Error::InvalidInput(e.to_string()))?;
        if let Ok(ix) = IvfIndex::load(&cut, &t) {
            // A flip in padding or a centroid value: still a consistent index.
            assert_eq!(ix.len(), index.len());
        }
    }
    // A future format version.
    let future = dir.path().join("future.ivf");
    index.save_version(&future, 9)?;
    refused(&future, &t, "format version 9 is not supported");
    // A model file, or any Arrow file that is not an index.
    let (m, _) = clustered(10, 4, 2, 1);
    let model = crate::Model {
        users: crate::IdMap::from_ids(vec![1]),
        items: crate::IdMap::from_ids((0..10).collect()),
        factors: crate::Factors {
            dim: 4,
            users: vec![0.0; 4],
            items: m,
            item_bias: vec![0.0; 10],
        },
        user_counts: vec![1],
        surfaces: None,
        user_keys: None,
        item_keys: None,
        item_counts: vec![1; 10],
        meta: Default::default(),
    };
    let model_path = dir.path().join("model.arrow");
    model.save(&model_path)?;
    refused(&model_path, &t, "not a reelkit IVF index");
    // An item in two lists.
    let mut twice = index.clone();
    let dup = twice.lists[1].ids[0];
    twice.lists[0].ids.push(dup);
    twice.save(&path)?;
    refused(&path, &t, "in two lists");
    // A missing file is an I/O error naming it.
    assert!(matches!(
        IvfIndex::load(&dir.path().join("none.ivf"), &t),
        Err(Error::Io { path, .. }) if path.ends_with("none.ivf")
    ));
    Ok(())
}

#[test]
fn probe_orders_merge_in_turns_without_repeats() {
    let sc =
        |v: &[u32]| -> Vec<Scored> { v.iter().map(|&item| Scored { item, score: 0.0 }).collect() };
    let ids = |v: Vec<Scored>| -> Vec<u32> { v.iter().map(|s| s.item).collect() };
    assert_eq!(
        ids(merge_probes(sc(&[3, 1, 4]), sc(&[1, 5, 9, 2]), 10)),
        vec![3, 1, 5, 4, 9, 2]
    );
    assert_eq!(ids(merge_probes(sc(&[]), sc(&[7, 7]), 10)), vec![7]);
    // Long rankings (every list) take the bitmap path: the same rule.
    let a: Vec<u32> = (0..100).collect();
    let b: Vec<u32> = (0..100).rev().collect();
    let m = ids(merge_probes(sc(&a), sc(&b), 100));
    assert_eq!(m.len(), 100);
    assert_eq!(&m[..4], &[0, 99, 1, 98]);
}
