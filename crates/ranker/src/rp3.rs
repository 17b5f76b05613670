//! RP3beta (Paudel et al., "Updatable, Accurate, Diverse, and Scalable
//! Recommendations for Interactive Applications", 2017), served as embeddings.
//!
//! On the binary interactions `X` (users × items) with degrees `d_u`, `d_i`,
//! a random walk item → user → item weighs the step from item `i` to item
//! `j` by
//!
//! ```text
//! W_ij = d_i^(−α) · d_j^(−β) · Σ_{u rated i and j} d_u^(−α)      (W_ii = 0)
//! ```
//!
//! (α = 1, β = 0 is the plain three-step walk P3; β > 0 lowers popular
//! items), and each row keeps its `neighbours` largest weights. User `u`
//! scores item `j` by `(x_u W)_j`. With `Q` an orthonormal basis of the rows
//! of `X` ([`EaseBasis`] of the binary matrix, exact up to `min(users,
//! items)` dimensions), `x_u = z_u Qᵀ` and `x_u W = z_u · (Qᵀ W)_j`: user
//! embeddings `z_u`, item embeddings the columns of `Qᵀ W`, so the model
//! goes into the ordinary model file and every reader serves it.

use rayon::prelude::*;

use crate::csr::Csr;
use crate::ease::EaseBasis;
use crate::error::{Error, Result};
use crate::factors::Factors;

/// RP3beta's parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rp3Params {
    /// The walk's exponent α (> 0; 1 = transition probabilities).
    pub alpha: f64,
    /// The popularity penalty β (≥ 0).
    pub beta: f64,
    /// Weights kept per item (its nearest neighbours).
    pub neighbours: usize,
}

impl Rp3Params {
    fn check(&self) -> Result<()> {
        if !(self.alpha > 0.0 && self.alpha <= 4.0) {
            return Err(Error::InvalidParam {
                field: "rp3 alpha",
                allowed: "(0, 4]",
                got: self.alpha.to_string(),
            });
        }
        if !(0.0..=4.0).contains(&self.beta) {
            return Err(Error::InvalidParam {
                field: "rp3 beta",
                allowed: "[0, 4]",
                got: self.beta.to_string(),
            });
        }
        if !(1..=100_000).contains(&self.neighbours) {
            return Err(Error::InvalidParam {
                field: "rp3 neighbours",
                allowed: "1 ..= 100000",
                got: self.neighbours.to_string(),
            });
        }
        Ok(())
    }
}

/// The rows of `W` (each item's kept neighbours and weights, by item,
/// sorted by neighbour).
pub(crate) fn weights(x: &Csr, p: &Rp3Params) -> Result<Vec<Vec<(u32, f32)>>> {
    p.check()?;
    Ok(rows(x, p))
}

fn rows(x: &Csr, p: &Rp3Params) -> Vec<Vec<(u32, f32)>> {
    let xt = x.transpose();
    let (n_users, n_items) = (x.n_rows(), x.n_cols());
    let du: Vec<f64> = (0..n_users)
        .map(|u| (x.row_len(u).max(1) as f64).powf(-p.alpha))
        .collect();
    let di: Vec<f64> = (0..n_items).map(|i| xt.row_len(i).max(1) as f64).collect();
    let pen_a: Vec<f64> = di.iter().map(|d| d.powf(-p.alpha)).collect();
    let pen_b: Vec<f64> = di.iter().map(|d| d.powf(-p.beta)).collect();
    (0..n_items)
        .into_par_iter()
        .map_init(
            || (vec![0f64; n_items], Vec::<u32>::new()),
            |(acc, touched), i| {
                touched.clear();
                for &u in xt.row(i).0 {
                    let w = du[u as usize];
                    for &j in x.row(u as usize).0 {
                        if acc[j as usize] == 0.0 {
                            touched.push(j);
                        }
                        acc[j as usize] += w;
                    }
                }
                let mut row: Vec<(u32, f32)> = touched
                    .iter()
                    .filter(|&&j| j as usize != i)
                    .map(|&j| (j, (acc[j as usize] * pen_a[i] * pen_b[j as usize]) as f32))
                    .collect();
                for &j in touched.iter() {
                    acc[j as usize] = 0.0;
                }
                if row.len() > p.neighbours {
                    row.select_nth_unstable_by(p.neighbours - 1, |a, b| {
                        b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
                    });
                    row.truncate(p.neighbours);
                }
                row.sort_unstable_by_key(|e| e.0);
                row
            },
        )
        .collect()
}

/// RP3beta on `x` (its values are ignored: binary) as factors over `basis`
/// (which must be the basis of the same binary matrix).
pub fn rp3beta_factors(x: &Csr, basis: &EaseBasis, p: &Rp3Params) -> Result<Factors> {
    if x.nnz() == 0 {
        return Err(Error::Empty);
    }
    let w = weights(x, p)?;
    let r = basis.dim();
    let n_items = x.n_cols();
    let q = basis.q();
    // Item embedding j = Σ_i W_ij q_i: gather by the transpose of W.
    let mut cols: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_items];
    for (i, row) in w.iter().enumerate() {
        for &(j, v) in row {
            cols[j as usize].push((i as u32, v));
        }
    }
    let items: Vec<f32> = cols
        .par_iter()
        .flat_map_iter(|col| {
            let mut e = vec![0f64; r];
            for &(i, v) in col {
                let qi = &q[i as usize * r..(i as usize + 1) * r];
                for (a, b) in e.iter_mut().zip(qi) {
                    *a += v as f64 * b;
                }
            }
            e.into_iter().map(|v| v as f32)
        })
        .collect();
    let users: Vec<f32> = basis.z().iter().map(|&v| v as f32).collect();
    Ok(Factors {
        dim: r,
        users,
        items,
        item_bias: vec![0.0; n_items],
    })
}

/// `x` with every stored value set to 1.
pub(crate) fn binary(x: &Csr) -> Csr {
    let mut b = x.clone();
    b.map_values(|_| 1.0);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::dot;

    /// The scores `x_u W` by the definition, densely.
    fn reference(x: &Csr, p: &Rp3Params) -> Vec<Vec<f64>> {
        let (nu, ni) = (x.n_rows(), x.n_cols());
        let xt = x.transpose();
        let mut w = vec![vec![0f64; ni]; ni];
        for (i, row) in w.iter_mut().enumerate() {
            for (j, wij) in row.iter_mut().enumerate() {
                if i == j {
                    continue;
                }
                let mut s = 0.0;
                for u in 0..nu {
                    if x.contains(u, i as u32) && x.contains(u, j as u32) {
                        s += (x.row_len(u) as f64).powf(-p.alpha);
                    }
                }
                *wij = s
                    * (xt.row_len(i).max(1) as f64).powf(-p.alpha)
                    * (xt.row_len(j).max(1) as f64).powf(-p.beta);
            }
            // Keep the row's largest `neighbours`.
            let mut order: Vec<usize> = (0..ni).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            for &j in &order[p.neighbours.min(ni)..] {
                row[j] = 0.0;
            }
        }
        (0..nu)
            .map(|u| {
                (0..ni)
                    .map(|j| {
                        (0..ni)
                            .filter(|&i| x.contains(u, i as u32))
                            .map(|i| w[i][j])
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn served_scores_equal_the_definition() -> Result<()> {
        let x = binary(&crate::csr::two_taste_groups(12, 9, 4));
        let basis = EaseBasis::new(&x, 64, 1)?;
        for p in [
            Rp3Params {
                alpha: 1.0,
                beta: 0.0,
                neighbours: 100,
            },
            Rp3Params {
                alpha: 0.6,
                beta: 0.4,
                neighbours: 3,
            },
        ] {
            let f = rp3beta_factors(&x, &basis, &p)?;
            let want = reference(&x, &p);
            for (u, row) in want.iter().enumerate() {
                for (j, &s) in row.iter().enumerate() {
                    let got = dot(f.user(u), f.item(j)) as f64;
                    assert!(
                        (got - s).abs() < 1e-4 * (1.0 + s.abs()),
                        "{p:?} u{u} j{j}: {got} vs {s}"
                    );
                }
            }
        }
        assert!(rp3beta_factors(
            &x,
            &basis,
            &Rp3Params {
                alpha: 0.0,
                beta: 0.0,
                neighbours: 5
            }
        )
        .is_err());
        Ok(())
    }
}
