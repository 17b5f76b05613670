//! Portable kernels: plain Rust shaped so that the compiler vectorises them
//! for whatever the target has (NEON on aarch64, SSE2 on baseline x86-64),
//! with the same definitions as the AVX2 ones: the batch micro-kernel puts
//! items in lanes, each lane one `mul_add` chain in dimension order (the
//! reference score); the single-query scan filters with a fast sum and the
//! same slack, then scores survivors with [`score_ref`].

use super::f16::f16_to_f32;
use super::scan::{
    excluded, floors_at, lanes, offer_bits, reaches, score_ref, RowScan, Tile, PANEL,
};
use crate::top::TopK;

/// A fast score: eight partial sums of plain products (any order is
/// covered by the slack), reduced pairwise, tail dimensions in order.
fn fast_dot(q: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (qc, xc) = (q.chunks_exact(8), x.chunks_exact(8));
    let (qt, xt) = (qc.remainder(), xc.remainder());
    for (a, b) in qc.zip(xc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (a, b) in qt.iter().zip(xt) {
        s += a * b;
    }
    s
}

/// Scans rows `lo..hi` of `s` into `top`: rows whose fast score plus the
/// slack is below the floor are skipped, the rest scored exactly.
pub(crate) fn scan(s: &RowScan<'_>, lo: usize, hi: usize, exclude: &[u32], top: &mut TopK) {
    let RowScan {
        q,
        items,
        bias,
        slack,
    } = *s;
    let f = q.len();
    let mut floor = top.floor();
    for i in lo..hi {
        let row = &items[i * f..(i + 1) * f];
        let b = bias.map_or(0.0, |b| b[i]);
        let mut fast = fast_dot(q, row);
        if bias.is_some() {
            fast += b;
        }
        // A NaN (score or slack) is not below the floor: scored exactly.
        if fast + slack < floor {
            continue;
        }
        let mut exact = score_ref(q, row);
        if bias.is_some() {
            exact += b;
        }
        if reaches(exact, floor) && !excluded(exclude, i) {
            top.push(i as u32, exact);
            floor = top.floor();
        }
    }
}

/// Scores of `R` queries against one packed panel: lane `l` of row `m`
/// is the reference chain of query `m` and item `l`.
#[inline]
fn micro<const R: usize>(qs: &[&[f32]; R], panel: &[f32], f: usize) -> [[f32; PANEL]; R] {
    let mut acc = [[0f32; PANEL]; R];
    for d in 0..f {
        let x: &[f32; PANEL] = panel[d * PANEL..(d + 1) * PANEL]
            .try_into()
            .expect("a panel row holds PANEL floats");
        for m in 0..R {
            let b = qs[m][d];
            for l in 0..PANEL {
                acc[m][l] = b.mul_add(x[l], acc[m][l]);
            }
        }
    }
    acc
}

/// Queries `j0..j0+R` against a packed tile of `count` items from `base`.
fn block<const R: usize>(t: &Tile<'_>, tops: &mut [TopK], j0: usize) {
    let Tile {
        exclude,
        packed,
        pbias,
        base,
        count,
        f,
        ..
    } = *t;
    let qs = t.queries_at::<R>(j0);
    let mut floors = floors_at::<R>(tops, j0);
    for p in 0..t.panels() {
        let acc = micro::<R>(&qs, &packed[p * PANEL * f..(p + 1) * PANEL * f], f);
        let valid = lanes(count - p * PANEL);
        for m in 0..R {
            let mut s = acc[m];
            if let Some(b) = pbias {
                for l in 0..PANEL {
                    s[l] += b[p * PANEL + l];
                }
            }
            let mut bits = 0u32;
            for (l, &x) in s.iter().enumerate() {
                bits |= u32::from(reaches(x, floors[m])) << l;
            }
            bits &= valid;
            if bits != 0 {
                floors[m] = offer_bits(
                    bits,
                    &s,
                    base + p * PANEL,
                    exclude[j0 + m],
                    &mut tops[j0 + m],
                );
            }
        }
    }
}

/// Every query of the batch against one packed tile, four at a time.
pub(crate) fn batch_tile(t: &Tile<'_>, tops: &mut [TopK]) {
    query_blocks!(
        block,
        t.queries.len(),
        4,
        [1 2 3],
        j,
        (t, tops, j)
    );
}

/// `out[i - lo] = q · row i` of the row-major f16 `data` (rows of `q.len()`
/// halves), converted one half at a time.
pub(super) fn f16_dots(q: &[f32], data: &[u16], lo: usize, hi: usize, out: &mut [f32]) {
    let f = q.len();
    for i in lo..hi {
        let row = &data[i * f..(i + 1) * f];
        out[i - lo] = q.iter().zip(row).map(|(a, &h)| a * f16_to_f32(h)).sum();
    }
}
