//! The hierarchical unified model inside a trained arm: its fit, its warm
//! start from yesterday's model, and the daily choice of each surface's
//! shares on the control's held-out impressions.

use std::time::Instant;

use reelkit_logs::Events;
use reelkit_ranker::{
    per_surface::{
        choose_item_specific, choose_specific, pick_specific, surface_vectors, train_surface_ials,
        train_surface_ials_from, HeldOut, HeldOutScore, SpecificChoice, SurfaceData,
        SurfaceFactors, SurfaceParams,
    },
    Factors, IdMap, TrainControl,
};
use reelkit_sim::{population::SURFACES, World};

use super::{rows_of, DayLog, Fit, FitStats, FitTime, Hier, TrainedPolicy};
use crate::error::Result;
use crate::recipe::Specific;

impl TrainedPolicy {
    /// The hierarchical unified model on the events of `days`, warm from
    /// `start` when given, with the shares `self.specific`.
    pub(super) fn fit_hier(
        &self,
        world: &World,
        log: &DayLog<'_>,
        days: std::ops::Range<usize>,
        start: Option<&Fit>,
    ) -> Result<Option<(Fit, FitStats)>> {
        let mut time = FitTime::default();
        let t = Instant::now();
        let data = crate::train::surface_data(&log[days])?;
        if data.matrix.nnz() == 0 {
            return Ok(None);
        }
        time.data = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let p = &self.params;
        let sp = SurfaceParams {
            specific: self.specific.clone(),
            item_specific: self.item_specific.clone(),
        }
        .check(SURFACES)?;
        let (fac, epochs) = match start.filter(|s| s.hier.is_some()) {
            None => (
                train_surface_ials(&data, p, &sp, &mut TrainControl::default())?,
                p.epochs,
            ),
            Some(prev) => {
                let init = self.warm_start_hier(&data, prev);
                let refresh = self.refresh_params()?;
                (
                    train_surface_ials_from(
                        &data,
                        &refresh,
                        &sp,
                        init,
                        &mut TrainControl::default(),
                    )?,
                    refresh.epochs,
                )
            }
        };
        // Counts of (user, surface) rows: a video's on every surface it
        // pleased someone, a user known when any of their rows has a positive.
        let item_counts = reelkit_ranker::evaluation::item_counts(&data.matrix);
        let mut surface_counts = vec![0u32; data.items.len() * SURFACES];
        for r in 0..data.matrix.n_rows() {
            for &i in data.matrix.row(r).0 {
                surface_counts[i as usize * SURFACES + r % SURFACES] += 1;
            }
        }
        let video_row = rows_of(&world.videos.id, &data.items, |c| {
            item_counts[c as usize] > 0
        });
        let user_row = rows_of(&world.users.id, &data.users, |r| {
            (0..SURFACES).any(|s| data.count(r as usize, s) > 0)
        });
        time.train = t.elapsed().as_secs_f64();
        let interactions = data.matrix.nnz();
        let SurfaceFactors {
            dim,
            shared,
            surface,
            items,
            item_bias,
            specific,
            item_specific,
            surface_items,
            ..
        } = fac;
        let fit = Fit {
            users: data.users.clone(),
            items: data.items.clone(),
            factors: Factors {
                dim,
                users: shared,
                items,
                item_bias,
            },
            item_counts,
            surface_counts,
            surface_users: surface,
            surface_items,
            heads: Default::default(),
            video_row,
            user_row,
            keys: None,
            hier: Some(Box::new(Hier {
                data,
                specific,
                item_specific,
            })),
        };
        Ok(Some((
            fit,
            FitStats {
                interactions,
                epochs,
                time,
            },
        )))
    }

    /// Yesterday's hierarchical model for known users and items, small
    /// seeded random vectors for new ones.
    fn warm_start_hier(&self, data: &SurfaceData, prev: &Fit) -> SurfaceFactors {
        let f = self.params.factors;
        let old_user = |id: u64| {
            let o = prev.users.get(id)? as usize;
            let per = (0..SURFACES).map(|s| prev.surface_user(o, s)).collect();
            Some((prev.factors.user(o), per))
        };
        let old_item = |id: u64| {
            let o = prev.items.get(id)? as usize;
            let per = (0..SURFACES).map(|s| prev.item_vector(o, s)).collect();
            Some((prev.factors.item(o), per))
        };
        let (shared, surface) = warm_side(&data.users, f, old_user, |id, row| {
            self.init_row(0, id, row)
        });
        let (items, surface_items) = warm_side(&data.items, f, old_item, |id, row| {
            self.init_row(1, id, row)
        });
        SurfaceFactors {
            dim: f,
            n_surfaces: SURFACES,
            specific: self.specific.clone(),
            item_specific: Vec::new(),
            shared,
            surface,
            item_bias: vec![0.0; data.items.len()],
            items,
            surface_items,
        }
    }

    /// Each surface's specific share for users and for videos, those the
    /// recipe leaves to `auto`, chosen on `events` (a day `before` did not
    /// train on); `None` when `before` is not hierarchical.
    pub(super) fn choose_specific(
        &self,
        before: &Fit,
        events: &Events,
    ) -> Result<Option<(Option<SpecificChoice>, Option<SpecificChoice>)>> {
        let Some(hier) = &before.hier else {
            return Ok(None);
        };
        let data = &hier.data;
        let (user, surface, item, gain) =
            crate::train::held_out(data, events, |v| before.item_counts[v as usize] > 0);
        let h = HeldOut {
            user: &user,
            surface: &surface,
            item: &item,
            gain: &gain,
        };
        // Warm from the model judged: a few steps move it to each share.
        let steps = self.params.cg_steps + 2;
        let per_surface = surface_vectors(
            &before.factors.items,
            &before.surface_items,
            before.dim(),
            SURFACES,
        );
        let items: &[f32] = &per_surface;
        let choice = match &self.recipe.specific {
            Specific::Fixed(_) => None,
            Specific::Auto { grid } => Some(choose_specific(
                data,
                items,
                &self.params,
                grid,
                &h,
                Some((&before.factors.users, &before.surface_users)),
                steps,
            )?),
        };
        let items_choice = match &self.recipe.item_specific {
            Specific::Fixed(_) => None,
            Specific::Auto { grid } => Some(choose_item_specific(
                data,
                &before.surface_users,
                &before.factors.items,
                items,
                &self.params,
                grid,
                &h,
                self.params.cg_steps,
            )?),
        };
        tracing::debug!(arm = %self.name, ?choice, ?items_choice, "specific shares");
        Ok(Some((choice, items_choice)))
    }
}

/// One side's warm start: yesterday's shared and surface vectors of the ids
/// `old` knows; a new id starts from one vector (`fresh`) on every surface.
fn warm_side<'a>(
    ids: &IdMap,
    f: usize,
    old: impl Fn(u64) -> Option<(&'a [f32], Vec<&'a [f32]>)>,
    fresh: impl Fn(u64, &mut [f32]),
) -> (Vec<f32>, Vec<f32>) {
    let mut shared = vec![0f32; ids.len() * f];
    let mut surface = vec![0f32; ids.len() * SURFACES * f];
    for (r, (p, w)) in shared
        .chunks_exact_mut(f)
        .zip(surface.chunks_exact_mut(SURFACES * f))
        .enumerate()
    {
        let id = ids.id(r as u32);
        match old(id) {
            Some((o, per)) => {
                p.copy_from_slice(o);
                for (s, v) in per.iter().enumerate() {
                    w[s * f..(s + 1) * f].copy_from_slice(v);
                }
            }
            None => {
                fresh(id, p);
                for s in 0..SURFACES {
                    w[s * f..(s + 1) * f].copy_from_slice(p);
                }
            }
        }
    }
    (shared, surface)
}

/// Adds a day's held-out evidence to the last `days` days' and chooses each
/// surface's share on them pooled: one day of a small surface's impressions
/// is too few to tell its shares apart, and the choice then followed the
/// noise from day to day. Pooled, the users' best share is kept
/// (`tolerance` 0: no one-SE preference for the shared taste): on the divergence sweep the one-SE
/// rule kept watch at φ 0.1 where tastes were independent (watch −8% against
/// siloed; the best share, 0.5: −5%; φ = 1 fixed: +4%).
pub(super) fn pool_days(
    evidence: &mut std::collections::VecDeque<Vec<HeldOutScore>>,
    choice: SpecificChoice,
    days: usize,
    tolerance: f64,
) -> Vec<f32> {
    evidence.push_back(choice.evidence);
    while evidence.len() > days.max(1) {
        evidence.pop_front();
    }
    let pooled: Option<Vec<HeldOutScore>> = (0..choice.grid.len())
        .map(|g| HeldOutScore::pool(evidence.iter().filter_map(|day| day.get(g))))
        .collect();
    match pooled {
        Some(p) => pick_specific(&choice.grid, &p, tolerance),
        None => choice.specific,
    }
}
