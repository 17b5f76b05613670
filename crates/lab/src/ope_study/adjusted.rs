//! With a coin per user, the logging policy is an experiment with small
//! candidate arms, and what lowers an A/B test's variance lowers this
//! estimate's: the candidate's users' mean watch time, adjusted by their
//! pre-period watch time as CUPED adjusts an arm (`ips-cuped`), over the
//! whole log's mean. The adjustment's slope is fitted on the candidate's
//! users; the pre-period is before any coin, so the estimate stays
//! consistent whatever the slope.

use reelkit_assign::splitmix64;

/// One row per user of the experiment's population.
pub(super) struct Users {
    /// Watch time in the log (0 for a user with no visit).
    pub y: Vec<f64>,
    /// Watch time in the pre-period.
    pub x: Vec<f64>,
    /// The member that served the user (0: the base).
    pub member: Vec<usize>,
}

/// The candidate `member`'s relative lift over the log on the users drawn
/// `count[u]` times each (`None`: every user once).
fn lift(t: &Users, member: usize, count: Option<&[u32]>) -> f64 {
    let (mut n, mut sy, mut sx) = (0.0, 0.0, 0.0);
    let (mut nc, mut cy, mut cx, mut cxx, mut cxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for u in 0..t.y.len() {
        let w = count.map_or(1.0, |c| c[u] as f64);
        if w == 0.0 {
            continue;
        }
        n += w;
        sy += w * t.y[u];
        sx += w * t.x[u];
        if t.member[u] == member {
            nc += w;
            cy += w * t.y[u];
            cx += w * t.x[u];
            cxx += w * t.x[u] * t.x[u];
            cxy += w * t.x[u] * t.y[u];
        }
    }
    if nc == 0.0 || sy == 0.0 {
        return f64::NAN;
    }
    let (my, mx) = (cy / nc, cx / nc);
    let var = cxx / nc - mx * mx;
    let theta = if var > 0.0 {
        (cxy / nc - mx * my) / var
    } else {
        0.0
    };
    let value = my - theta * (mx - sx / n);
    value / (sy / n) - 1.0
}

/// The estimate and its percentile bootstrap interval over users (draw `j`
/// of resample `b` a counter-based hash of the seed, `b` and `j`: the same
/// seed, the same interval, whatever the thread count).
pub(super) fn cuped_lift(
    t: &Users,
    member: usize,
    bootstrap: usize,
    level: f64,
    seed: u64,
) -> (f64, [f64; 2]) {
    let n = t.y.len();
    let mut draws: Vec<f64> = (0..bootstrap)
        .map(|b| {
            let mut count = vec![0u32; n];
            for j in 0..n {
                let h = splitmix64(seed ^ splitmix64((b as u64) << 32 | j as u64));
                count[(h % n as u64) as usize] += 1;
            }
            lift(t, member, Some(&count))
        })
        .filter(|x| x.is_finite())
        .collect();
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if draws.is_empty() {
            f64::NAN
        } else {
            draws[((q * draws.len() as f64) as usize).min(draws.len() - 1)]
        }
    };
    let tail = (1.0 - level) / 2.0;
    (lift(t, member, None), [at(tail), at(1.0 - tail)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adjustment_removes_what_the_pre_period_explains() {
        // y = 3x + 10 on the candidate's users, 3x elsewhere; the candidate
        // got the users with the larger x, so their plain mean overstates it.
        let n = 40;
        let x: Vec<f64> = (0..n).map(|u| u as f64).collect();
        let member: Vec<usize> = (0..n).map(|u| usize::from(u % 4 == 3)).collect();
        let y: Vec<f64> = (0..n)
            .map(|u| 3.0 * x[u] + if member[u] == 1 { 10.0 } else { 0.0 })
            .collect();
        let t = Users { y, x, member };
        let mean_x = t.x.iter().sum::<f64>() / n as f64;
        let logged = t.y.iter().sum::<f64>() / n as f64;
        let truth = (3.0 * mean_x + 10.0) / logged - 1.0;
        let (est, ci) = cuped_lift(&t, 1, 200, 0.95, 7);
        assert!((est - truth).abs() < 1e-9, "{est} vs {truth}");
        assert!(ci[0] <= est && est <= ci[1], "{ci:?}");
        // Without the adjustment the estimate would be off by the x gap.
        let plain = {
            let (s, c) = (0..n)
                .filter(|&u| t.member[u] == 1)
                .fold((0.0, 0.0), |(s, c), u| (s + t.y[u], c + 1.0));
            s / c / logged - 1.0
        };
        assert!((plain - truth).abs() > 0.05, "{plain} vs {truth}");
        // The same seed, the same interval.
        assert_eq!(cuped_lift(&t, 1, 200, 0.95, 7), (est, ci));
    }
}
