//! The session simulator: day after day, each user starts sessions, a policy
//! fills the feed, the user watches, engages and decides whether to go on.

use rayon::prelude::*;
use reelkit_logs::{Event, Events, Surface};

use crate::arms::Arms;
use crate::error::Result;
use crate::policy::{DayContext, FeedRequest, Policy, Scratch, SeenSet, VideoStats, Visit};
use crate::rng::Rng;
use crate::world::{sigmoid, World};

const TAG_SESSIONS: u64 = 10;
const TAG_IMPRESSION: u64 = 11;
const TAG_POLICY: u64 = 12;

const DAY_MS: i64 = 86_400_000;
/// Sessions start between 06:00 and 22:00 UTC.
const FIRST_START_MS: i64 = 6 * 3_600_000;
const START_WINDOW_MS: i64 = 16 * 3_600_000;
/// A watched half (or a like) counts as an engaged view for popularity.
const ENGAGED_FRACTION: f64 = 0.5;
/// Trailing popularity halves every two days.
const POPULARITY_DECAY: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// The state of every user that carries over from day to day.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserState {
    seen: SeenSet,
    /// Exponential average of session satisfaction: drives retention.
    satisfaction: f64,
    /// Creators followed (small: a linear scan is fastest).
    followed: Vec<u32>,
}

/// What one user-day produced.
#[derive(Debug, Default)]
struct UserDay {
    events: Vec<Event>,
    /// Each event's propensity under an exploring policy, up to the last
    /// explored one (NaN: the page did not explore; empty: none did).
    propensity: Vec<f64>,
    /// (video index, engaged, liked) per impression, for popularity statistics.
    shown: Vec<(u32, bool, bool)>,
    /// Counterfactual plays: (arm, the events the user would have produced).
    other: Vec<(usize, Vec<Event>)>,
}

/// Counts of one simulation run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Days simulated.
    pub days: u32,
    /// Impressions logged.
    pub impressions: usize,
    /// Sessions played.
    pub sessions: usize,
}

/// A running simulation over a [`World`]: users' history, satisfaction and the
/// catalogue's popularity carry over between calls to [`Simulator::run`]. Clone
/// it to play different policies from the same state.
#[derive(Debug, Clone)]
pub struct Simulator<'w> {
    pub(crate) world: &'w World,
    /// Seed of the behavioural noise (default: the world's seed).
    seed: u64,
    next_day: u32,
    pub(crate) users: Vec<UserState>,
    stats: VideoStats,
}

/// A user's sessions of one day, drawn before any page is filled: they depend
/// on the user's state at the start of the day, not on what the policy shows.
#[derive(Debug, Default)]
struct DayPlan {
    /// Start of each session, ms after midnight, in order.
    starts: Vec<i64>,
    surfaces: Vec<Surface>,
}

fn plan_user_day(world: &World, seed: u64, day: u32, u: usize, state: &UserState) -> DayPlan {
    if (day as i32) < world.users.signup_day[u] {
        return DayPlan::default();
    }
    let p = &world.params;
    let b = &p.behaviour;
    let mut rng = Rng::stream(seed, &[TAG_SESSIONS, u as u64, day as u64]);
    let retention = (b.retention_sensitivity * (state.satisfaction - b.neutral_satisfaction))
        .exp()
        .clamp(0.25, 3.0);
    let lambda = world.users.activity[u] as f64 * retention;
    let n_sessions = rng.poisson(lambda).min(p.user.max_sessions_per_day as u64) as u32;
    if n_sessions == 0 {
        return DayPlan::default();
    }
    let mut starts: Vec<i64> = (0..n_sessions)
        .map(|_| FIRST_START_MS + rng.below(START_WINDOW_MS as u64) as i64)
        .collect();
    starts.sort_unstable();
    let mix = world.users.surface_mix[u];
    let surfaces = (0..n_sessions)
        .map(|_| {
            let x = rng.f64() as f32 * (mix[0] + mix[1] + mix[2]);
            if x < mix[0] {
                Surface::Reels
            } else if x < mix[0] + mix[1] {
                Surface::Feed
            } else {
                Surface::Watch
            }
        })
        .collect();
    DayPlan { starts, surfaces }
}

impl<'w> Simulator<'w> {
    /// A simulation at day 0 of `world`.
    pub fn new(world: &'w World) -> Simulator<'w> {
        let n_videos = world.videos.len();
        let neutral = world.params.behaviour.neutral_satisfaction;
        Simulator {
            world,
            seed: world.params.seed,
            next_day: 0,
            users: vec![
                UserState {
                    satisfaction: neutral,
                    ..UserState::default()
                };
                world.n_users()
            ],
            stats: VideoStats {
                impressions: vec![0; n_videos],
                engaged: vec![0; n_videos],
                likes: vec![0; n_videos],
                trailing: world.videos.prior_views.iter().map(|&x| x as f64).collect(),
            },
        }
    }

    /// The same world played with other behavioural noise: sessions, watch
    /// times and engagement draw from streams seeded by `seed` instead of the
    /// world's seed (for repeated experiments on one world).
    pub fn with_seed(mut self, seed: u64) -> Simulator<'w> {
        self.seed = seed;
        self
    }

    /// The world being simulated.
    pub fn world(&self) -> &'w World {
        self.world
    }

    /// The next day to be simulated.
    pub fn day(&self) -> u32 {
        self.next_day
    }

    /// Popularity statistics so far.
    pub fn stats(&self) -> &VideoStats {
        &self.stats
    }

    /// Simulates `days` days with every user on `policy`; returns the events.
    pub fn run(
        &mut self,
        days: u32,
        policy: &mut dyn Policy,
        progress: &(dyn Fn(u32) + Sync),
    ) -> Result<Events> {
        let arms = Arms {
            names: vec![policy.name().to_string()],
            of_user: vec![0; self.world.n_users()],
        };
        self.run_arms(days, &mut [policy], &arms, progress)
    }

    /// Simulates `days` days, each user served by the policy of their arm. Events
    /// carry `variant` when there is more than one arm.
    pub fn run_arms(
        &mut self,
        days: u32,
        policies: &mut [&mut dyn Policy],
        arms: &Arms,
        progress: &(dyn Fn(u32) + Sync),
    ) -> Result<Events> {
        arms.check(self.world, policies.len())?;
        let mut events = Events::default();
        if arms.names.len() > 1 {
            events.variant = Some(Vec::new());
        }
        for _ in 0..days {
            let mut day_events = self.run_day(policies, arms, &mut [], &mut [])?;
            events.append(&mut day_events);
            progress(self.next_day);
        }
        Ok(events)
    }

    fn eligible(&self, day: u32) -> [Vec<u32>; 3] {
        let v = &self.world.videos;
        let n = v.available_on(day as i32) as u32;
        let short: Vec<u32> = (0..n).filter(|&i| !v.long[i as usize]).collect();
        let long: Vec<u32> = (0..n).filter(|&i| v.long[i as usize]).collect();
        [short, (0..n).collect(), long]
    }

    /// One day for every user. With counterfactual states (`cf` not empty:
    /// `cf[u][a]` is user `u`'s state under arm `a`, `None` for the own arm),
    /// every user is also played under every other arm, and each arm's events
    /// (the own arm's observed ones included) are appended to `potential[a]`.
    pub(crate) fn run_day(
        &mut self,
        policies: &mut [&mut dyn Policy],
        arms: &Arms,
        cf: &mut [Vec<Option<UserState>>],
        potential: &mut [Events],
    ) -> Result<Events> {
        let day = self.next_day;
        let eligible = self.eligible(day);
        let world = self.world;
        let seed = self.seed;
        let n_arms = arms.names.len();
        {
            // Who each arm's policy serves today, on which surfaces, with what
            // history: known before any page is filled, so a policy can rank
            // for all of them at once.
            let state_of = |u: usize, a: usize| -> Option<&UserState> {
                if a == arms.of_user[u] as usize {
                    Some(&self.users[u])
                } else {
                    cf.get(u).and_then(|c| c[a].as_ref())
                }
            };
            let mut visits: Vec<Vec<Visit<'_>>> = (0..n_arms).map(|_| Vec::new()).collect();
            for u in 0..world.n_users() {
                for (a, out) in visits.iter_mut().enumerate() {
                    let Some(state) = state_of(u, a) else {
                        continue;
                    };
                    let plan = plan_user_day(world, seed, day, u, state);
                    if plan.surfaces.is_empty() {
                        continue;
                    }
                    let mut surfaces = [false; 3];
                    for s in &plan.surfaces {
                        surfaces[s.index()] = true;
                    }
                    out.push(Visit {
                        user: u,
                        surfaces,
                        seen: &state.seen,
                    });
                }
            }
            for (p, v) in policies.iter_mut().zip(&visits) {
                p.begin_day(&DayContext {
                    world,
                    day,
                    stats: &self.stats,
                    eligible: &eligible,
                    visits: v,
                })?;
            }
        }
        let policies: Vec<&dyn Policy> = policies.iter().map(|p| &**p).collect();
        // A plain run has no counterfactual states: one empty list per user.
        let mut none: Vec<Vec<Option<UserState>>> = Vec::new();
        let cf = if cf.is_empty() {
            none.resize(self.users.len(), Vec::new());
            &mut none[..]
        } else {
            cf
        };
        let outputs: Vec<UserDay> = self
            .users
            .par_iter_mut()
            .zip(cf.par_iter_mut())
            .enumerate()
            .map_init(Scratch::default, |scratch, (u, (state, cf))| {
                let own = arms.of_user[u] as usize;
                let play = |state: &mut UserState, a: usize, scratch: &mut Scratch| {
                    simulate_user_day(world, seed, day, u, state, policies[a], &eligible, scratch)
                };
                let mut out = play(state, own, scratch);
                for (a, s) in cf.iter_mut().enumerate() {
                    if let Some(s) = s {
                        let other = play(s, a, scratch);
                        out.other.push((a, other.events));
                    }
                }
                out
            })
            .collect();
        let n: usize = outputs.iter().map(|o| o.events.len()).sum();
        let mut events = Events::with_capacity(n);
        let multi = n_arms > 1;
        let s = &mut self.stats;
        let mut engaged_today = vec![0u64; s.trailing.len()];
        for (u, out) in outputs.iter().enumerate() {
            let own = arms.of_user[u] as usize;
            let arm = &arms.names[own];
            for (i, e) in out.events.iter().enumerate() {
                if multi {
                    events.push_in(e, arm);
                } else {
                    events.push(e);
                }
                match out.propensity.get(i) {
                    Some(&p) if !p.is_nan() => events.set_last_propensity(p),
                    _ => {}
                }
            }
            if !potential.is_empty() {
                for e in &out.events {
                    potential[own].push(e);
                }
                for (a, other) in &out.other {
                    for e in other {
                        potential[*a].push(e);
                    }
                }
            }
            for &(v, engaged, liked) in &out.shown {
                let v = v as usize;
                s.impressions[v] += 1;
                s.engaged[v] += engaged as u64;
                s.likes[v] += liked as u64;
                engaged_today[v] += engaged as u64;
            }
        }
        for (t, e) in s.trailing.iter_mut().zip(engaged_today) {
            *t = *t * POPULARITY_DECAY + e as f64;
        }
        self.next_day += 1;
        Ok(events)
    }
}

/// Unique, deterministic session id from (user index, day, session of the day).
fn session_id(user: usize, day: u32, k: u32) -> u64 {
    let raw = ((user as u64) << 20) | (((day & 0xFFF) as u64) << 8) | (k as u64 & 0xFF);
    crate::world::scramble_id(raw, 4)
}

#[allow(clippy::too_many_arguments)]
fn simulate_user_day(
    world: &World,
    seed: u64,
    day: u32,
    u: usize,
    state: &mut UserState,
    policy: &dyn Policy,
    eligible: &[Vec<u32>; 3],
    scratch: &mut Scratch,
) -> UserDay {
    let mut out = UserDay::default();
    let DayPlan { starts, surfaces } = plan_user_day(world, seed, day, u, state);
    if surfaces.is_empty() {
        return out;
    }
    let p = &world.params;
    let b = &p.behaviour;
    let user_id = world.users.id[u];
    let n_sessions = surfaces.len() as u32;
    scratch.clear();
    let mut policy_rng = Rng::stream(seed, &[TAG_POLICY, u as u64, day as u64]);
    let day_start = p.start_ts_ms + day as i64 * DAY_MS;
    let patience = world.users.patience[u] as f64;
    let mut page = Vec::with_capacity(b.page_size);
    let mut clock = day_start;
    for k in 0..n_sessions {
        let surface = surfaces[k as usize];
        let sid = session_id(u, day, k);
        clock = clock.max(day_start + starts[k as usize]);
        let mut mood = b.neutral_satisfaction;
        let mut position = 0u32;
        let mut sat_sum = 0.0;
        'session: loop {
            page.clear();
            let req = FeedRequest {
                world,
                day,
                user: u,
                surface,
                session_id: sid,
                session_position: position,
                seen: &state.seen,
                eligible: &eligible[surface.index()],
                n: b.page_size,
                ts_ms: clock,
                request_id: ((day as u64) << 40) | ((k as u64) << 24) | position as u64,
            };
            scratch.propensity.clear();
            policy.fill(&req, scratch, &mut policy_rng, &mut page);
            if page.is_empty() {
                break;
            }
            for (slot, &v) in page.iter().take(b.page_size).enumerate() {
                let vi = v as usize;
                let mut r = Rng::stream(
                    seed,
                    &[
                        TAG_IMPRESSION,
                        u as u64,
                        day as u64,
                        k as u64,
                        position as u64,
                    ],
                );
                let response = world.response(u, vi, surface.index()) + b.watch_noise * r.normal();
                let long = world.videos.long[vi];
                let frac = world.expected_watch_fraction(response, long);
                let duration = world.videos.duration_ms[vi];
                let watch_ms = ((duration as f64 * frac).round() as u32).max(300.min(duration));
                let eng = b.engagement_slope * response;
                let liked = r.bernoulli(sigmoid(b.like_intercept + eng));
                let shared = r.bernoulli(sigmoid(b.share_intercept + eng));
                let commented = r.bernoulli(sigmoid(b.comment_intercept + eng));
                let creator = world.videos.creator[vi];
                let follow_draw = r.bernoulli(sigmoid(b.follow_intercept + eng));
                let followed = follow_draw && !state.followed.contains(&creator);
                if followed {
                    state.followed.push(creator);
                }
                out.events.push(Event {
                    user_id,
                    session_id: sid,
                    ts_ms: clock,
                    video_id: world.videos.id[vi],
                    creator_id: world.creators.id[creator as usize],
                    surface,
                    position,
                    duration_ms: duration,
                    watch_ms,
                    liked,
                    shared,
                    commented,
                    followed,
                });
                if let Some(&p) = scratch.propensity.get(slot) {
                    out.propensity.resize(out.events.len() - 1, f64::NAN);
                    out.propensity.push(p);
                }
                out.shown
                    .push((v, frac >= ENGAGED_FRACTION || liked, liked));
                state.seen.insert(v);

                let s = frac.min(1.2) + if liked { 0.5 } else { 0.0 };
                sat_sum += s;
                mood = b.mood_memory * mood + (1.0 - b.mood_memory) * s;
                position += 1;
                clock += watch_ms as i64 + b.gap_ms as i64;
                let p_continue = sigmoid(
                    b.continue_intercept
                        + b.continue_slope * (mood - b.neutral_satisfaction)
                        + patience,
                )
                .min(0.99);
                if position >= b.max_session_len || !r.bernoulli(p_continue) {
                    break 'session;
                }
            }
        }
        if position > 0 {
            let m = b.satisfaction_memory;
            state.satisfaction = m * state.satisfaction + (1.0 - m) * sat_sum / position as f64;
        }
        clock += 60_000;
    }
    out
}
