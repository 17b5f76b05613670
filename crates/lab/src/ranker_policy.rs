//! A trained model file as a simulator `Policy` (the simulator knows nothing
//! of the ranker; this adapter joins them by external ids).

use std::sync::Arc;

use reelkit_ranker::Ranker;
use reelkit_sim::{
    policies::{best_unseen, DayContext, FeedRequest, PopularPolicy, Scratch},
    random::Rng,
    Policy, World,
};

/// Videos ranked per user-day and surface before walking the list.
const DEPTH: usize = 400;

/// Ranks each known user's eligible videos by the model (dot product plus item
/// bias, or the value model's combined score); users the model does not know
/// (sign-ups after training) and videos it does not know (new uploads) fall back
/// to trailing popularity. Wrap it in `ExploreFresh` like the `popular` baseline
/// so that only the ranking differs between arms.
#[derive(Debug)]
pub struct RankerPolicy {
    ranker: Arc<Ranker>,
    /// World video index → model item index.
    video_to_item: Vec<Option<u32>>,
    /// World user index → model user index.
    user_to_model: Vec<Option<u32>>,
    fallback: PopularPolicy,
    use_value_model: bool,
    name: String,
    each_page: bool,
}

impl RankerPolicy {
    /// Joins the model's ids to the world's.
    pub fn new(ranker: Arc<Ranker>, world: &World, use_value_model: bool) -> RankerPolicy {
        let m = ranker.model();
        let video_to_item = world.videos.id.iter().map(|&id| m.items.get(id)).collect();
        let user_to_model = world.users.id.iter().map(|&id| m.users.get(id)).collect();
        RankerPolicy {
            ranker,
            video_to_item,
            user_to_model,
            fallback: PopularPolicy::default(),
            use_value_model,
            name: "ranker".to_string(),
            each_page: false,
        }
    }

    /// Answers every page afresh, as the service answers a request that
    /// excludes what the user has seen: the page's best eligible videos
    /// the user has not seen. (By default the policy ranks once per
    /// user-day and surface and walks that list, so a video listed on a page
    /// but not shown — the session ended, or an exploring slot took its
    /// place — is passed over for the rest of the day.) What `reelkit ope`
    /// replays a model as; slower, one scoring of the catalogue per page.
    pub fn answering_each_page(mut self) -> Self {
        self.each_page = true;
        self
    }

    /// Renames the policy (the arm's `variant`).
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }
}

impl Policy for RankerPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> reelkit_sim::Result<()> {
        self.fallback.begin_day(ctx)
    }

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        let Some(user) = self.user_to_model[req.user] else {
            return self.fallback.fill(req, state, rng, out);
        };
        let m = self.ranker.model();
        let d = m.dim;
        let q = &m.user_factors[user as usize * d..(user as usize + 1) * d];
        let vm = m.meta.value_model.as_ref().filter(|_| self.use_value_model);
        let score = |v: u32| {
            let i = self.video_to_item[v as usize]? as usize;
            let dot = reelkit_ranker::retrieval::dot(q, &m.item_factors[i * d..(i + 1) * d]);
            let bias = m.item_bias[i];
            Some(match vm {
                Some(vm) => vm.score(dot, m.item_counts[i], bias),
                None => (dot + bias) as f64,
            })
        };
        if self.each_page {
            out.extend(best_unseen(req, req.n, score));
        } else {
            state.walk_ranked(req, DEPTH, out, score);
        }
        // Every known video seen: trailing popularity for the rest (new uploads).
        self.fallback.fill_rest(req, rng, out);
    }
}
