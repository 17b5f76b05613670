//! Team-draft interleaving.

use crate::{fnv1a, splitmix64};

/// Which ranker placed a video in an interleaved list: `A` is the first list
/// given to [`team_draft`] (by convention the control), `B` the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Team {
    /// The first ranker.
    A,
    /// The second ranker.
    B,
}

/// The seed of one request's coin flips: a mix of the experiment's salt, the
/// user and the request id, so a replayed request interleaves the same way.
pub fn interleave_seed(salt: &str, user_id: u64, request_id: u64) -> u64 {
    splitmix64(fnv1a(salt) ^ splitmix64(user_id) ^ splitmix64(request_id ^ 0x005E_ED0F_1EAF))
}

/// Team-draft interleaving (Radlinski, Kurup & Joachims 2008) of `a` and `b`
/// into at most `k` distinct items.
///
/// Round by round, the team with fewer picks so far (a coin flip from `seed`
/// when tied) appends its best item not yet in the list; a team whose list is
/// used up leaves the picks to the other. Every item comes with the team that
/// placed it. Items repeated within one list count once.
pub fn team_draft<T: Copy + Eq + std::hash::Hash>(
    a: &[T],
    b: &[T],
    k: usize,
    seed: u64,
) -> Vec<(T, Team)> {
    team_draft_by(a, b, k, seed, |_| true)
}

/// [`team_draft`] where `accept` is asked, once, about each item a team is
/// about to place (in order), and an item it refuses is passed over by both
/// teams: how a creator cap or a late filter applies to the merged list.
pub fn team_draft_by<T: Copy + Eq + std::hash::Hash>(
    a: &[T],
    b: &[T],
    k: usize,
    seed: u64,
    mut accept: impl FnMut(&T) -> bool,
) -> Vec<(T, Team)> {
    let mut out: Vec<(T, Team)> = Vec::with_capacity(k.min(a.len() + b.len()));
    let mut taken = std::collections::HashSet::with_capacity(out.capacity());
    let (mut ia, mut ib) = (0usize, 0usize);
    let (mut na, mut nb) = (0usize, 0usize);
    let mut state = seed;
    let next_free = |list: &[T], i: &mut usize, taken: &std::collections::HashSet<T>| {
        while *i < list.len() && taken.contains(&list[*i]) {
            *i += 1;
        }
        list.get(*i).copied()
    };
    while out.len() < k {
        let fa = next_free(a, &mut ia, &taken);
        let fb = next_free(b, &mut ib, &taken);
        let a_turn = match (fa, fb) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            _ if na != nb => na < nb,
            _ => {
                state = splitmix64(state);
                state >> 63 == 0
            }
        };
        let (item, team) = if a_turn { (fa, Team::A) } else { (fb, Team::B) };
        let Some(item) = item else { break };
        taken.insert(item);
        if !accept(&item) {
            continue;
        }
        if a_turn {
            na += 1;
        } else {
            nb += 1;
        }
        out.push((item, team));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_lists_keep_their_order_and_split_the_credit_evenly() {
        let list: Vec<u32> = (0..10).collect();
        let mut firsts_a = 0;
        for request in 0..2_000 {
            let m = team_draft(&list, &list, 10, interleave_seed("s", 1, request));
            assert_eq!(m.iter().map(|x| x.0).collect::<Vec<_>>(), list);
            // Picks alternate within each round: after every even position the
            // teams are level.
            for pair in m.chunks(2) {
                assert_ne!(pair[0].1, pair[1].1);
            }
            if m[0].1 == Team::A {
                firsts_a += 1;
            }
        }
        // 2,000 fair coins: sd 22.
        assert!((firsts_a - 1_000i32).abs() < 110, "{firsts_a}");
    }

    #[test]
    fn each_team_places_its_best_unplaced_item_and_nothing_twice() {
        let a = [1, 2, 3, 4, 5, 6];
        let b = [3, 1, 7, 8, 2, 9];
        for seed in 0..200 {
            let m = team_draft(&a, &b, 6, seed);
            let items: Vec<i32> = m.iter().map(|x| x.0).collect();
            let mut dedup = items.clone();
            dedup.sort_unstable();
            dedup.dedup();
            assert_eq!(dedup.len(), 6, "{items:?}");
            // Replaying the draft: each pick is its team's first item not yet placed.
            for (i, (item, team)) in m.iter().enumerate() {
                let list: &[i32] = if *team == Team::A { &a } else { &b };
                let best = list.iter().find(|x| !items[..i].contains(x)).copied();
                assert_eq!(best, Some(*item), "seed {seed}: {m:?}");
            }
            let na = m.iter().filter(|x| x.1 == Team::A).count();
            assert_eq!(na, 3, "balanced picks: {m:?}");
        }
    }

    #[test]
    fn refused_items_are_passed_over_by_both_teams() {
        // Odd items refused (a cap, say): neither team places them, and the
        // picks stay balanced among the accepted ones.
        let a: Vec<i32> = (1..=16).collect();
        let b = [3, 5, 2, 8, 6, 10, 12, 14, 16, 18];
        for seed in 0..100 {
            let m = team_draft_by(&a, &b, 6, seed, |x| x % 2 == 0);
            assert!(m.iter().all(|x| x.0 % 2 == 0), "{m:?}");
            assert_eq!(m.len(), 6);
            assert_eq!(m.iter().filter(|x| x.1 == Team::A).count(), 3, "{m:?}");
        }
    }

    #[test]
    fn a_short_list_leaves_the_rest_to_the_other_team() {
        let m = team_draft(&[1], &[2, 3, 4, 5], 4, 9);
        assert_eq!(m.len(), 4);
        assert_eq!(m.iter().filter(|x| x.1 == Team::A).count(), 1);
        assert!(team_draft::<u8>(&[], &[], 5, 1).is_empty());
        assert_eq!(team_draft(&[1, 2], &[2, 1], 10, 3).len(), 2);
    }

    #[test]
    fn the_seed_decides_and_is_reproducible() {
        let a: Vec<u32> = (0..20).collect();
        let b: Vec<u32> = (100..120).collect();
        let s = interleave_seed("exp", 5, 77);
        assert_eq!(team_draft(&a, &b, 20, s), team_draft(&a, &b, 20, s));
        let differ = (0..50)
            .filter(|&r| {
                team_draft(&a, &b, 20, interleave_seed("exp", 5, r)) != team_draft(&a, &b, 20, s)
            })
            .count();
        assert!(differ > 40, "{differ}");
    }
}
