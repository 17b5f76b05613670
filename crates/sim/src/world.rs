//! The synthetic world: topics, users, creators and videos with their hidden
//! (ground-truth) latent vectors, and the true response model.

use serde::{Deserialize, Serialize};

use crate::params::{SimParams, ValidSimParams};
use crate::rng::{Discrete, Rng};

// Stream tags: each random process of world generation has its own stream.
const TAG_TOPIC: u64 = 1;
const TAG_USER: u64 = 2;
const TAG_CREATOR: u64 = 3;
const TAG_VIDEO: u64 = 4;
const TAG_SURFACE_TASTE: u64 = 5;

/// Number of surfaces (reels, feed, watch: [`reelkit_logs::Surface::ALL`] order).
pub const SURFACES: usize = 3;

const MASK53: u64 = (1 << 53) - 1;

/// A bijection on `[0, 2^53)`: external ids look random, stay unique, and fit in
/// a JSON number (JavaScript-safe integer).
pub fn scramble_id(index: u64, kind: u64) -> u64 {
    let mut x = (index.wrapping_add(kind << 40)) & MASK53;
    x = x.wrapping_mul(0x5DEE_CE66_D1CE_4E5B | 1) & MASK53;
    x ^= x >> 26;
    x = x.wrapping_mul(0x2545_F491_4F6C_DD1D | 1) & MASK53;
    x ^= x >> 21;
    x
}

/// Users: who watches, their hidden tastes and habits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Users {
    /// Each user's id (JS-safe, unique).
    pub id: Vec<u64>,
    /// Row-major `n × dim` unit base taste vectors (hidden).
    pub taste: Vec<f32>,
    /// Row-major `n × 3 × dim` unit taste vectors per surface (reels, feed,
    /// watch; hidden): the base taste mixed with a taste of the surface's own
    /// by `surface_taste_divergence`.
    pub surface_taste: Vec<f32>,
    /// Expected sessions per day at neutral satisfaction (hidden).
    pub activity: Vec<f32>,
    /// Day the user signed up; negative for users who existed before day 0.
    pub signup_day: Vec<i32>,
    /// The user's main topic (declared interest: observable).
    pub home_topic: Vec<u32>,
    /// Probability of starting a session on reels, feed, watch (hidden).
    pub surface_mix: Vec<[f32; 3]>,
    /// Shift of the user's session continuation logit (hidden).
    pub patience: Vec<f32>,
}

/// Creators: quality, topic focus and how much they post.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Creators {
    /// Each creator's id.
    pub id: Vec<u64>,
    /// The creator's main topic.
    pub topic: Vec<u32>,
    /// Mean quality of the creator's videos (hidden).
    pub quality: Vec<f32>,
    /// Relative output and audience (Zipf; mean 1).
    pub popularity: Vec<f32>,
}

/// Videos, ordered by upload day: those available on day `d` are a prefix.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Videos {
    /// Each video's id.
    pub id: Vec<u64>,
    /// Index into [`Creators`].
    pub creator: Vec<u32>,
    /// The video's topic.
    pub topic: Vec<u32>,
    /// Long-form (watch tab) rather than short (reels).
    pub long: Vec<bool>,
    /// Its length, milliseconds.
    pub duration_ms: Vec<u32>,
    /// Day it was uploaded (negative: before day 0).
    pub upload_day: Vec<i32>,
    /// Hidden quality.
    pub quality: Vec<f32>,
    /// Row-major `n × dim` unit latent vectors (hidden).
    pub latent: Vec<f32>,
    /// Engagement gathered before day 0 (0 for new uploads).
    pub prior_views: Vec<f32>,
}

impl Videos {
    /// Number of videos.
    pub fn len(&self) -> usize {
        self.id.len()
    }

    /// Whether there is no video.
    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    /// Number of videos uploaded on or before `day` (a prefix, as videos are
    /// sorted by upload day).
    pub fn available_on(&self, day: i32) -> usize {
        self.upload_day.partition_point(|&d| d <= day)
    }
}

/// The whole ground truth of a simulation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct World {
    /// The parameters the world was drawn from.
    pub params: SimParams,
    /// Dimension of the latent taste/content space.
    pub dim: usize,
    /// Row-major `topics × dim` unit topic centres.
    pub topic_centres: Vec<f32>,
    /// Every user.
    pub users: Users,
    /// Every creator.
    pub creators: Creators,
    /// Every video (a prefix is available on each day).
    pub videos: Videos,
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Dot product with four independent accumulators.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 4];
    let chunks = n / 4;
    for i in 0..chunks {
        for j in 0..4 {
            acc[j] += a[4 * i + j] * b[4 * i + j];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..n {
        s += a[i] * b[i];
    }
    s
}

#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl World {
    /// Draws a world from checked parameters. Deterministic in `(params, seed)`.
    pub fn generate(params: &ValidSimParams) -> World {
        let p = params.get();
        let dim = p.dim;
        let seed = p.seed;
        let scale = 1.0 / (dim as f64).sqrt();

        let mut rng = Rng::stream(seed, &[TAG_TOPIC]);
        let mut topic_centres = vec![0f32; p.topics * dim];
        for c in topic_centres.chunks_exact_mut(dim) {
            c.iter_mut().for_each(|x| *x = rng.normal() as f32);
            normalise(c);
        }
        // Topics are not equally popular: both audiences and creators follow it.
        let topic_dist = Discrete::zipf(p.topics, 0.7);

        let users = Self::users(p, &topic_centres, &topic_dist, scale);
        let creators = Self::creators(p, &topic_dist);
        let videos = Self::videos(p, &topic_centres, &creators, scale);
        World {
            params: p.clone(),
            dim,
            topic_centres,
            users,
            creators,
            videos,
        }
    }

    /// One taste: a Dirichlet mixture of 1 to `max_topics` Zipf-drawn topic
    /// centres plus noise, normalised, written into `taste`; returns the
    /// topics, heaviest first.
    fn draw_taste(
        p: &SimParams,
        centres: &[f32],
        topic_dist: &Discrete,
        scale: f64,
        rng: &mut Rng,
        weights: &mut Vec<f64>,
        taste: &mut [f32],
    ) -> Vec<usize> {
        let dim = p.dim;
        let k = 1 + rng.below(p.user.max_topics as u64) as usize;
        let mut topics = vec![topic_dist.sample(rng)];
        while topics.len() < k {
            let t = topic_dist.sample(rng);
            if !topics.contains(&t) {
                topics.push(t);
            }
        }
        rng.dirichlet(&vec![1.0; k], weights);
        // The first topic carries the largest weight.
        weights.sort_by(|a, b| b.total_cmp(a));
        for (t, w) in topics.iter().zip(weights.iter()) {
            for (x, c) in taste.iter_mut().zip(&centres[t * dim..(t + 1) * dim]) {
                *x += *w as f32 * c;
            }
        }
        for x in taste.iter_mut() {
            *x += (p.user.taste_noise * scale * rng.normal()) as f32;
        }
        normalise(taste);
        topics
    }

    fn users(p: &SimParams, centres: &[f32], topic_dist: &Discrete, scale: f64) -> Users {
        let dim = p.dim;
        let n = p.users;
        let mut u = Users {
            id: Vec::with_capacity(n),
            taste: vec![0f32; n * dim],
            surface_taste: vec![0f32; n * SURFACES * dim],
            activity: Vec::with_capacity(n),
            signup_day: Vec::with_capacity(n),
            home_topic: Vec::with_capacity(n),
            surface_mix: Vec::with_capacity(n),
            patience: Vec::with_capacity(n),
        };
        let mix = &p.surfaces;
        let total = mix.reels + mix.feed + mix.watch;
        let alpha =
            [mix.reels, mix.feed, mix.watch].map(|s| (s / total * mix.concentration).max(1e-3));
        let d = p.surface_taste_divergence;
        let (keep, own) = ((1.0 - d).sqrt() as f32, d.sqrt() as f32);
        let mut weights = Vec::new();
        let mut other = vec![0f32; dim];
        for i in 0..n {
            let mut rng = Rng::stream(p.seed, &[TAG_USER, i as u64]);
            u.id.push(scramble_id(i as u64, 1));
            let taste = &mut u.taste[i * dim..(i + 1) * dim];
            let topics =
                Self::draw_taste(p, centres, topic_dist, scale, &mut rng, &mut weights, taste);
            for s in 0..SURFACES {
                let at = (i * SURFACES + s) * dim;
                let surface = &mut u.surface_taste[at..at + dim];
                if d == 0.0 {
                    surface.copy_from_slice(&u.taste[i * dim..(i + 1) * dim]);
                    continue;
                }
                // A taste of the surface's own, from its own stream (so the
                // base world's draws do not depend on the divergence).
                let mut srng = Rng::stream(p.seed, &[TAG_SURFACE_TASTE, i as u64, s as u64]);
                other.iter_mut().for_each(|x| *x = 0.0);
                Self::draw_taste(
                    p,
                    centres,
                    topic_dist,
                    scale,
                    &mut srng,
                    &mut weights,
                    &mut other,
                );
                for ((x, b), o) in surface
                    .iter_mut()
                    .zip(&u.taste[i * dim..(i + 1) * dim])
                    .zip(&other)
                {
                    *x = keep * b + own * o;
                }
                normalise(surface);
            }
            u.home_topic.push(topics[0] as u32);
            u.activity.push(
                rng.lognormal(p.user.activity_median, p.user.activity_sigma)
                    .min(50.0) as f32,
            );
            let signup = if rng.bernoulli(p.new_user_share) {
                rng.below(p.days as u64) as i32
            } else {
                -1 - rng.below(365) as i32
            };
            u.signup_day.push(signup);
            rng.dirichlet(&alpha, &mut weights);
            u.surface_mix
                .push([weights[0] as f32, weights[1] as f32, weights[2] as f32]);
            u.patience.push((0.3 * rng.normal()) as f32);
        }
        u
    }

    fn creators(p: &SimParams, topic_dist: &Discrete) -> Creators {
        let n = p.creators;
        let harmonic: f64 = (0..n)
            .map(|r| 1.0 / ((r + 1) as f64).powf(p.video.creator_zipf))
            .sum();
        let mut c = Creators::default();
        for i in 0..n {
            let mut rng = Rng::stream(p.seed, &[TAG_CREATOR, i as u64]);
            c.id.push(scramble_id(i as u64, 2));
            c.topic.push(topic_dist.sample(&mut rng) as u32);
            c.quality
                .push((p.video.creator_quality_sd * rng.normal()) as f32);
            let zipf = 1.0 / ((i + 1) as f64).powf(p.video.creator_zipf);
            c.popularity.push((zipf * n as f64 / harmonic) as f32);
        }
        c
    }

    fn videos(p: &SimParams, centres: &[f32], creators: &Creators, scale: f64) -> Videos {
        let dim = p.dim;
        let n = p.videos + p.new_videos_per_day * p.days as usize;
        let creator_dist = Discrete::new(creators.popularity.iter().map(|&x| x as f64));
        let mut v = Videos {
            latent: vec![0f32; n * dim],
            ..Videos::default()
        };
        let hist = p.video.history_days as i32;
        for i in 0..n {
            let mut rng = Rng::stream(p.seed, &[TAG_VIDEO, i as u64]);
            let upload_day = if i < p.videos {
                // Spread the back catalogue over the history, oldest first.
                -hist + (i as i64 * hist as i64 / p.videos as i64) as i32
            } else {
                ((i - p.videos) / p.new_videos_per_day.max(1)) as i32
            };
            let c = creator_dist.sample(&mut rng);
            let topic = if rng.bernoulli(p.video.creator_topic_focus) {
                creators.topic[c] as usize
            } else {
                rng.below(p.topics as u64) as usize
            };
            let long = rng.bernoulli(p.video.long_share);
            let secs = if long {
                rng.lognormal(p.video.long_median_s, p.video.long_sigma)
                    .clamp(60.0, 3.0 * 3600.0)
            } else {
                rng.lognormal(p.video.short_median_s, p.video.short_sigma)
                    .clamp(3.0, 90.0)
            };
            let quality = creators.quality[c] as f64 + p.video.quality_sd * rng.normal();
            let latent = &mut v.latent[i * dim..(i + 1) * dim];
            for (x, c) in latent
                .iter_mut()
                .zip(&centres[topic * dim..(topic + 1) * dim])
            {
                *x = c + (p.video.latent_noise * scale * rng.normal()) as f32;
            }
            normalise(latent);
            let prior = if upload_day < 0 {
                let age = (-upload_day) as f64;
                p.video.prior_views_scale
                    * creators.popularity[c] as f64
                    * (0.8 * quality).exp()
                    * (-age / 30.0).exp()
                    * rng.lognormal(1.0, 0.5)
            } else {
                0.0
            };
            v.id.push(scramble_id(i as u64, 3));
            v.creator.push(c as u32);
            v.topic.push(topic as u32);
            v.long.push(long);
            v.duration_ms.push((secs * 1000.0).round() as u32);
            v.upload_day.push(upload_day);
            v.quality.push(quality as f32);
            v.prior_views.push(prior as f32);
        }
        v
    }

    /// Number of users.
    pub fn n_users(&self) -> usize {
        self.users.id.len()
    }

    /// User `u`'s hidden base taste vector.
    pub fn taste(&self, u: usize) -> &[f32] {
        &self.users.taste[u * self.dim..(u + 1) * self.dim]
    }

    /// User `u`'s hidden taste on surface `s` (index in [`reelkit_logs::Surface::ALL`]).
    pub fn surface_taste(&self, u: usize, s: usize) -> &[f32] {
        let at = (u * SURFACES + s) * self.dim;
        &self.users.surface_taste[at..at + self.dim]
    }

    /// Video `v`'s hidden latent vector.
    pub fn latent(&self, v: usize) -> &[f32] {
        &self.videos.latent[v * self.dim..(v + 1) * self.dim]
    }

    /// The true affinity of user `u` for video `v` on surface `s` (cosine of
    /// the surface's taste and the video's latent vector).
    pub fn affinity(&self, u: usize, v: usize, s: usize) -> f32 {
        dot(self.surface_taste(u, s), self.latent(v))
    }

    /// The noise-free response of user `u` to video `v` shown on surface `s`:
    /// the logit that drives watch fraction and engagement. The oracle ranks
    /// by it.
    pub fn response(&self, u: usize, v: usize, s: usize) -> f64 {
        let b = &self.params.behaviour;
        b.affinity_weight * (self.affinity(u, v, s) as f64 - b.affinity_offset)
            + b.quality_weight * self.videos.quality[v] as f64
    }

    /// The expected watch fraction of a response (before noise), for the oracle
    /// and for ground-truth analyses.
    pub fn expected_watch_fraction(&self, response: f64, long: bool) -> f64 {
        let b = &self.params.behaviour;
        let cap = if long {
            b.long_watch_factor
        } else {
            b.loop_gain
        };
        cap * sigmoid(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn small() -> ValidSimParams {
        SimParams {
            users: 300,
            videos: 2_000,
            creators: 100,
            days: 3,
            ..SimParams::default()
        }
        .check()
        .expect("valid params")
    }

    #[test]
    fn ids_are_unique_and_js_safe() {
        let ids: HashSet<u64> = (0..200_000).map(|i| scramble_id(i, 3)).collect();
        assert_eq!(ids.len(), 200_000);
        assert!(ids.iter().all(|&x| x < (1 << 53)));
    }

    #[test]
    fn world_is_deterministic_and_well_formed() {
        let p = small();
        let a = World::generate(&p);
        let b = World::generate(&p);
        assert_eq!(a.videos.latent, b.videos.latent);
        assert_eq!(a.users.activity, b.users.activity);
        let n = p.videos + p.new_videos_per_day * p.days as usize;
        assert_eq!(a.videos.len(), n);
        assert!(a.videos.upload_day.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(a.videos.available_on(-1), p.videos);
        assert_eq!(a.videos.available_on(0), p.videos + p.new_videos_per_day);
        for v in 0..n {
            let norm: f32 = a.latent(v).iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-4);
            let d = a.videos.duration_ms[v];
            if a.videos.long[v] {
                assert!((60_000..=10_800_000).contains(&d));
            } else {
                assert!((3_000..=90_000).contains(&d));
            }
        }
        // Users agree more with videos of their home topic than with others.
        let (mut same, mut other) = (Vec::new(), Vec::new());
        for u in 0..50 {
            for v in 0..400 {
                let x = dot(a.taste(u), a.latent(v));
                if a.videos.topic[v] == a.users.home_topic[u] {
                    same.push(x)
                } else {
                    other.push(x)
                }
            }
        }
        let mean = |x: &[f32]| x.iter().sum::<f32>() / x.len() as f32;
        assert!(
            mean(&same) > mean(&other) + 0.3,
            "{} {}",
            mean(&same),
            mean(&other)
        );
    }

    #[test]
    fn dot_matches_naive() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.25).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(
                (dot(&a, &b) - naive).abs() <= 1e-3 * (1.0 + naive.abs()),
                "{n}"
            );
        }
    }
}
