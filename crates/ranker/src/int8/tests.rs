//! The int8 table's tests: every kernel against the scalar reference.

use super::*;
use crate::rng::test_floats as floats;

#[test]
fn every_kernel_returns_the_reference_candidates_for_dims_0_to_67() {
    let n = 77;
    for f in (0usize..=67).chain([100, 128]) {
        let items = floats(f as u64 + 1, n * f);
        let bias = floats(f as u64 + 2, n);
        let queries: Vec<Vec<f32>> = (0..9).map(|j| floats(f as u64 * 13 + j, f)).collect();
        let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let ex_list: Vec<u32> = (0..n as u32).step_by(5).collect();
        let ks: Vec<usize> = (0..9)
            .map(|j| [1, 5, 10, 77, 100, 0, 3, 20, 40][j])
            .collect();
        let ex: Vec<&[u32]> = (0..9)
            .map(|j| if j % 3 == 0 { &ex_list[..] } else { &[][..] })
            .collect();
        for (bias, kernel) in [None, Some(&bias[..])]
            .into_iter()
            .flat_map(|b| Kernel::available().into_iter().map(move |k| (b, k)))
        {
            let fast = Int8Table::new(f, &items, bias).with_kernel(kernel);
            let reference = fast.clone().generic();
            let all: Vec<u32> = (0..fast.len() as u32).collect();
            // Batches of 1..=9 queries exercise every micro-tile height.
            for m in 1..=9 {
                let got = fast.top_k_batch(&qs[..m], &ks[..m], &ex[..m]);
                let want = reference.top_k_batch(&qs[..m], &ks[..m], &ex[..m]);
                assert_eq!(got, want, "dim {f}, {m} queries, {kernel:?}");
            }
            for q in &qs {
                let s = reference.scores_of(q, &all);
                for r in fast.top_k_batch(&[q], &[n], &[&[]]).remove(0) {
                    assert_eq!(r.score.to_bits(), s[r.item as usize].to_bits(), "dim {f}");
                }
            }
        }
    }
}

#[test]
fn approximate_scores_are_close_and_rescoring_recovers_the_exact_top_k() {
    let (n, f) = (20_000usize, 64usize);
    let items = floats(5, n * f);
    let t = ItemTable::new(f, &items, None);
    let q8 = Int8Table::new(f, &items, None);
    assert!(q8.bytes() * 3 < items.len() * 4, "not smaller than f32");
    let queries: Vec<Vec<f32>> = (0..50).map(|j| floats(100 + j, f)).collect();
    let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
    let all: Vec<u32> = (0..n as u32).collect();
    // Quantization error within a few percent of |q|·|x|.
    let approx = q8.scores_of(qs[0], &all);
    let exact = t.scores_of(qs[0], &all);
    let qn = qs[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    for i in 0..n {
        let xn = items[i * f..(i + 1) * f]
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt();
        assert!((approx[i] - exact[i]).abs() <= 0.03 * qn * xn, "item {i}");
    }
    let k = vec![100; qs.len()];
    let ex: Vec<&[u32]> = vec![&[]; qs.len()];
    let got = q8.search(&t, &qs, &k, &ex, 4);
    let want = t.top_k_batch(&qs, &k, &ex);
    let hits: usize = got
        .iter()
        .zip(&want)
        .map(|(g, w)| g.iter().filter(|s| w.contains(s)).count())
        .sum();
    let recall = hits as f64 / (100.0 * qs.len() as f64);
    assert!(recall >= 0.99, "recall@100 {recall}");
    // Without oversampling the quantized order alone loses items.
    let bare = q8.search(&t, &qs, &k, &ex, 1);
    let bare_hits: usize = bare
        .iter()
        .zip(&want)
        .map(|(g, w)| g.iter().filter(|s| w.contains(s)).count())
        .sum();
    assert!(bare_hits <= hits);
}

#[test]
fn codes_at_full_scale_do_not_saturate() {
    // Every code at ±63 in both the items and the queries: the largest
    // pair sums the kernel adds in i16. Saturation anywhere would change
    // a score from the scalar reference's exact integers.
    let (n, f) = (64usize, 72usize);
    let items: Vec<f32> = (0..n * f)
        .map(|j| if (j / f + j % f) % 5 == 0 { -2.0 } else { 2.0 })
        .collect();
    let queries: Vec<Vec<f32>> = [1.0f32, -1.0]
        .iter()
        .map(|&sign| {
            (0..f)
                .map(|d| if d % 7 == 0 { -sign } else { sign })
                .collect()
        })
        .collect();
    let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
    let reference = Int8Table::new(f, &items, None).generic();
    let all: Vec<u32> = (0..n as u32).collect();
    for (q, kernel) in qs
        .iter()
        .flat_map(|q| Kernel::available().into_iter().map(move |k| (q, k)))
    {
        let fast = reference.clone().with_kernel(kernel);
        let want = reference.scores_of(q, &all);
        // Every value is exactly ±scale·63, so the reference is the
        // true dot product up to the float rounding of the scales.
        for (i, w) in want.iter().enumerate() {
            let dot: f32 = q
                .iter()
                .zip(&items[i * f..(i + 1) * f])
                .map(|(a, b)| a * b)
                .sum();
            assert!(
                (w - dot).abs() <= 1e-4 * dot.abs().max(1.0),
                "item {i}: {w} vs {dot}"
            );
        }
        let got = fast.top_k_batch(&[q], &[n], &[&[]]).remove(0);
        assert_eq!(got.len(), n);
        for r in got {
            assert_eq!(r.score.to_bits(), want[r.item as usize].to_bits());
        }
    }
}

#[test]
fn zero_vectors_and_empty_tables_score_without_nan() {
    let items = vec![0f32; 4 * 8];
    let t = Int8Table::new(8, &items, None);
    let r = t.top_k_batch(&[&[0.0; 8]], &[2], &[&[]]);
    assert_eq!(r[0].len(), 2);
    assert!(r[0].iter().all(|s| s.score == 0.0));
    let empty = Int8Table::new(8, &[], None);
    assert!(empty.is_empty());
    assert!(empty.top_k_batch(&[&[1.0; 8]], &[5], &[&[]])[0].is_empty());
}
