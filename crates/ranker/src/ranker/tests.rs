//! Tests of the ranker: requests, catalogues and surfaces, reduced-precision
//! and IVF retrieval.

mod requests {
    use super::super::*;

    pub(super) fn batch_of<'a>(jobs: &[(u64, usize, &'a Request)]) -> Vec<BatchRequest<'a>> {
        jobs.iter()
            .map(|&(user_id, k, request)| BatchRequest {
                user_id,
                k,
                request,
            })
            .collect()
    }
    use crate::factors::Factors;
    use crate::ids::IdMap;
    use crate::model::ModelMeta;

    fn ranker() -> Ranker {
        Ranker::from_model(Model {
            users: IdMap::from_ids(vec![100]),
            items: IdMap::from_ids(vec![1, 2, 3, 4]),
            factors: Factors {
                dim: 2,
                users: vec![1.0, 0.0],
                items: vec![0.9, 0.0, 0.5, 0.5, 0.1, 1.0, -1.0, 0.0],
                item_bias: vec![0.0; 4],
            },
            user_counts: vec![2],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![5, 1, 9, 2],
            meta: ModelMeta::default(),
        })
    }

    #[test]
    fn recommend_excludes_and_falls_back() -> Result<()> {
        let r = ranker();
        let rec = r.recommend(
            100,
            2,
            &Request {
                exclude: vec![1],
                ..Request::default()
            },
        );
        assert!(!rec.fallback);
        assert_eq!(
            rec.items.iter().map(|x| x.item_id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let rec = r.recommend(999, 2, &Request::default());
        assert!(rec.fallback);
        assert_eq!(
            rec.items.iter().map(|x| x.item_id).collect::<Vec<_>>(),
            vec![3, 1]
        );
        // An unknown user with history is personalised, history excluded.
        let rec = r.recommend(
            999,
            1,
            &Request {
                history: vec![1],
                ..Request::default()
            },
        );
        assert!(!rec.fallback);
        assert_eq!(rec.items[0].item_id, 2);
        // A history of videos the model does not know leaves a known user's
        // profile in place (it used to fold in an empty history: every score
        // 0, catalogue order) and an unknown user on the fallback.
        let unknown_history = Request {
            history: vec![77, 78],
            ..Request::default()
        };
        let plain = r.recommend(100, 2, &Request::default());
        let rec = r.recommend(100, 2, &unknown_history);
        assert_eq!(rec, plain);
        assert_eq!(rec.items[0].score, 0.9);
        let jobs = [BatchRequest {
            user_id: 100,
            k: 2,
            request: &unknown_history,
        }];
        assert_eq!(r.recommend_batch(&jobs)[0], plain);
        assert!(r.recommend(999, 2, &unknown_history).fallback);
        assert_eq!(r.score(100, &[1, 4])?, vec![0.9, -1.0]);
        assert!(matches!(r.score(100, &[77]), Err(Error::UnknownItem(77))));
        Ok(())
    }

    #[test]
    fn ranker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Ranker>();
    }
}

mod catalog_tests {
    use super::super::*;
    use super::requests::batch_of;
    use crate::factors::Factors;
    use crate::ids::IdMap;
    use crate::model::ModelMeta;

    /// Six videos, scores for user 1 falling with the index; creators
    /// 7,7,7,8,8,9; videos 3 and 5 are long.
    fn ranker() -> Result<Ranker> {
        let items: Vec<f32> = (0..6).flat_map(|i| [1.0 - 0.1 * i as f32, 0.0]).collect();
        Ranker::from_model(Model {
            users: IdMap::from_ids(vec![1]),
            items: IdMap::from_ids(vec![10, 11, 12, 13, 14, 15]),
            factors: Factors {
                dim: 2,
                users: vec![1.0, 0.0],
                items,
                item_bias: vec![0.0; 6],
            },
            user_counts: vec![1],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1, 2, 3, 4, 5, 6],
            meta: ModelMeta::default(),
        })
        .with_catalog(
            &[15, 14, 13, 12, 11, 10, 99],
            &[9, 8, 8, 7, 7, 7, 1],
            &[true, false, true, false, false, false, false],
        )
    }

    fn ids(r: &Recommendations) -> Vec<u64> {
        r.items.iter().map(|x| x.item_id).collect()
    }

    /// `serve --explore`: each slot keeps the ranker's video with
    /// probability 1 − ε, else shows one drawn uniformly from the request's
    /// pool (its surface's videos, not excluded, not listed); the returned
    /// propensities are those frequencies, checked over 20,000 seeds.
    #[test]
    fn exploration_shows_each_video_with_its_logged_propensity() -> Result<()> {
        let r = ranker()?;
        let reels = Request {
            surface: Some(Surface::Reels),
            ..Request::default()
        };
        let listed = r.recommend(1, 2, &reels);
        assert_eq!(ids(&listed), vec![10, 11]);
        let runs = 20_000;
        let mut seen: std::collections::HashMap<(usize, u64), usize> = Default::default();
        for seed in 0..runs {
            let mut recs = listed.clone();
            let p = r.explore(&mut recs, &reels, 0.5, seed);
            let mut again = listed.clone();
            assert_eq!(r.explore(&mut again, &reels, 0.5, seed), p, "seeded");
            assert_eq!(ids(&again), ids(&recs));
            assert_ne!(recs.items[0].item_id, recs.items[1].item_id);
            for (j, (x, &pj)) in recs.items.iter().zip(&p).enumerate() {
                // Short videos only (reels), never an excluded or listed one
                // in an explored slot, whose score is not the model's.
                if x.item_id == listed.items[j].item_id {
                    assert_eq!(pj, 0.5);
                } else {
                    assert!([12, 14].contains(&x.item_id), "{}", x.item_id);
                    assert_eq!(pj, 0.25);
                    assert!(x.score.is_nan());
                }
                *seen.entry((j, x.item_id)).or_default() += 1;
            }
        }
        for ((j, v), n) in seen {
            let want = if v == listed.items[j].item_id {
                0.5
            } else {
                0.25
            };
            let got = n as f64 / runs as f64;
            assert!(
                (got - want).abs() < 0.015,
                "slot {j} video {v}: {got} vs {want}"
            );
        }
        // A pool smaller than the list: nothing explored, propensity 1.
        let narrow = Request {
            exclude: vec![12],
            ..reels.clone()
        };
        let mut recs = r.recommend(1, 2, &narrow);
        let before = recs.clone();
        assert_eq!(r.explore(&mut recs, &narrow, 0.5, 3), vec![1.0, 1.0]);
        assert_eq!(recs, before);
        Ok(())
    }

    #[test]
    fn surface_filter_and_creator_cap() -> Result<()> {
        let r = ranker()?;
        let all = r.recommend(1, 10, &Request::default());
        assert_eq!(ids(&all), vec![10, 11, 12, 13, 14, 15]);
        let reels = Request {
            surface: Some(Surface::Reels),
            ..Request::default()
        };
        assert_eq!(ids(&r.recommend(1, 10, &reels)), vec![10, 11, 12, 14]);
        let watch = Request {
            surface: Some(Surface::Watch),
            ..Request::default()
        };
        assert_eq!(ids(&r.recommend(1, 10, &watch)), vec![13, 15]);
        let capped = Request {
            max_per_creator: Some(1),
            ..Request::default()
        };
        assert_eq!(ids(&r.recommend(1, 10, &capped)), vec![10, 13, 15]);
        assert_eq!(ids(&r.recommend(1, 2, &capped)), vec![10, 13]);
        // The popularity fallback honours the cap too.
        let fb = r.recommend(404, 10, &capped);
        assert!(fb.fallback);
        assert_eq!(ids(&fb), vec![15, 14, 12]);
        // A batch answers exactly as one request at a time.
        let fresh = Request {
            history: vec![15],
            ..Request::default()
        };
        let plain = Request::default();
        let jobs: Vec<(u64, usize, &Request)> = vec![
            (1, 3, &reels),
            (1, 10, &capped),
            (404, 2, &plain),
            (404, 2, &fresh),
            (1, 0, &watch),
            (1, 100, &plain),
        ];
        let batch = r.recommend_batch(&batch_of(&jobs));
        for (j, &(u, k, req)) in jobs.iter().enumerate() {
            assert_eq!(batch[j], r.recommend(u, k, req), "job {j}");
        }
        // Similar videos exclude the query video; unknown videos are None.
        let sim = r.similar(10, 2).ok_or(Error::UnknownItem(10))?;
        assert_eq!(
            sim.iter().map(|x| x.item_id).collect::<Vec<_>>(),
            vec![11, 12]
        );
        assert!(r.similar(77, 2).is_none());
        Ok(())
    }

    #[test]
    fn a_per_surface_model_serves_the_users_vector_on_the_surface() -> Result<()> {
        // Items 10–12 lie on axis 0, items 20–22 on axis 1. User 1's shared
        // taste leans to axis 0; on watch they want axis 1.
        let items: Vec<u64> = vec![10, 11, 12, 20, 21, 22];
        let mut item_vecs = Vec::new();
        for (k, _) in items.iter().enumerate() {
            let w = 1.0 - 0.1 * (k % 3) as f32;
            item_vecs.extend(if k < 3 { [w, 0.0] } else { [0.0, w] });
        }
        let m = Model {
            users: crate::ids::IdMap::from_ids(vec![1]),
            items: crate::ids::IdMap::from_ids(items),
            factors: crate::factors::Factors {
                dim: 2,
                users: vec![0.8, 0.2],
                items: item_vecs,
                item_bias: vec![0.0; 6],
            },
            user_counts: vec![5],
            item_counts: vec![1; 6],
            surfaces: Some(crate::model::SurfaceVectors {
                names: vec!["reels".into(), "feed".into(), "watch".into()],
                // reels, feed, watch
                vectors: vec![0.9, 0.1, 0.8, 0.2, 0.1, 0.9],
                counts: vec![3, 2, 1],
            }),
            user_keys: None,
            item_keys: None,
            meta: crate::model::ModelMeta::default(),
        };
        let dir = tempfile::tempdir().map_err(|e| crate::model::io_err(Path::new("tmp"), e))?;
        let path = dir.path().join("m.arrow");
        m.save(&path)?;
        for r in [Ranker::from_model(m), Ranker::open(&path)?] {
            assert_eq!(r.surfaces(), ["reels", "feed", "watch"]);
            let on = |s: Option<Surface>| {
                let req = Request {
                    surface: s,
                    ..Request::default()
                };
                ids(&r.recommend(1, 3, &req))
            };
            assert_eq!(on(None), vec![10, 11, 12]);
            assert_eq!(on(Some(Surface::Reels)), vec![10, 11, 12]);
            assert_eq!(on(Some(Surface::Watch)), vec![20, 21, 22]);
            assert_eq!(
                r.user_embedding_on(1, Some(Surface::Watch)),
                Some(&[0.1f32, 0.9][..])
            );
            assert_eq!(r.user_embedding_on(1, None), Some(&[0.8f32, 0.2][..]));
            // A batch answers as one request at a time, per surface.
            let watch = Request {
                surface: Some(Surface::Watch),
                ..Request::default()
            };
            let plain = Request::default();
            let jobs: Vec<(u64, usize, &Request)> = vec![(1, 2, &watch), (1, 2, &plain)];
            let batch = r.recommend_batch(&batch_of(&jobs));
            for (j, &(u, k, req)) in jobs.iter().enumerate() {
                assert_eq!(batch[j], r.recommend(u, k, req), "job {j}");
            }
        }
        Ok(())
    }

    #[test]
    fn catalogue_must_cover_the_model() {
        let base = ranker().map(|r| r.has_catalog());
        assert!(matches!(base, Ok(true)));
        let r = Ranker::from_model(Model {
            users: IdMap::from_ids(vec![1]),
            items: IdMap::from_ids(vec![10, 11]),
            factors: Factors {
                dim: 1,
                users: vec![1.0],
                items: vec![1.0, 0.5],
                item_bias: vec![0.0; 2],
            },
            user_counts: vec![1],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1, 1],
            meta: ModelMeta::default(),
        });
        let err = r
            .with_catalog(&[10], &[1], &[false])
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("video 11")));
    }
}

mod half_tests {
    use super::super::*;
    use super::requests::batch_of;
    use crate::factors::Factors;
    use crate::ids::IdMap;
    use crate::model::ModelMeta;

    fn random_model(users: usize, items: usize, dim: usize) -> Model {
        let mut s = 99u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 - 1.0) as f32
        };
        Model {
            users: IdMap::from_ids((0..users as u64).collect()),
            items: IdMap::from_ids((1000..1000 + items as u64).collect()),
            factors: Factors {
                dim,
                users: (0..users * dim).map(|_| next()).collect(),
                items: (0..items * dim).map(|_| next()).collect(),
                item_bias: (0..items).map(|_| 0.1 * next()).collect(),
            },
            user_counts: vec![1; users],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1; items],
            meta: ModelMeta::default(),
        }
    }

    #[test]
    fn ivf_retrieval_recalls_the_exact_top_k_and_honours_surfaces() {
        let m = random_model(300, 20_000, 16);
        let exact = Ranker::from_model(m.clone());
        let ivf = Ranker::from_model(m.clone()).with_retrieval(Retrieval::Ivf);
        assert!(matches!(ivf.approx, Some(Approx::Ivf(_))));
        let plain = Request::default();
        let ids = |r: &Recommendations| r.items.iter().map(|i| i.item_id).collect::<Vec<u64>>();
        let (mut hit, mut all) = (0, 0);
        let mut jobs = Vec::new();
        for u in 0..300u64 {
            let (got, want) = (
                ivf.recommend(u, 100, &plain),
                exact.recommend(u, 100, &plain),
            );
            let want_ids = ids(&want);
            hit += ids(&got).iter().filter(|i| want_ids.contains(i)).count();
            all += want_ids.len();
            // Scores are exact wherever an item is found.
            for r in &got.items {
                if let Some(w) = want.items.iter().find(|w| w.item_id == r.item_id) {
                    assert_eq!(r.score.to_bits(), w.score.to_bits());
                }
            }
            jobs.push((u, 100, &plain));
        }
        // Tuned on the users themselves, to recall 0.95.
        assert!(
            hit as f64 >= 0.95 * all as f64,
            "recall {}",
            hit as f64 / all as f64
        );
        let batch = ivf.recommend_batch(&batch_of(&jobs));
        for (u, b) in batch.iter().enumerate() {
            assert_eq!(b, &ivf.recommend(u as u64, 100, &plain));
        }
        // Surfaces filter inside the scan: reels never shows a long video.
        let vids: Vec<u64> = (1000..21_000).collect();
        let creators: Vec<u64> = vids.iter().map(|v| v % 97).collect();
        let long: Vec<bool> = vids.iter().map(|v| v % 5 == 0).collect();
        let ivf = ivf
            .with_catalog(&vids, &creators, &long)
            .expect("catalogue");
        let exact = exact
            .with_catalog(&vids, &creators, &long)
            .expect("catalogue");
        for surface in [Surface::Reels, Surface::Watch] {
            let req = Request {
                surface: Some(surface),
                exclude: (1000..1400).collect(),
                ..Request::default()
            };
            let (mut hit, mut all) = (0, 0);
            for u in 0..100u64 {
                let got = ivf.recommend(u, 50, &req);
                assert_eq!(got.items.len(), 50);
                for r in &got.items {
                    assert_eq!(r.item_id % 5 == 0, surface == Surface::Watch, "{surface:?}");
                    assert!(r.item_id >= 1400);
                }
                let want = ids(&exact.recommend(u, 50, &req));
                hit += ids(&got).iter().filter(|i| want.contains(i)).count();
                all += want.len();
            }
            assert!(
                hit as f64 >= 0.9 * all as f64,
                "{surface:?} recall {}",
                hit as f64 / all as f64
            );
        }
    }

    #[test]
    fn the_ivf_index_beside_the_model_is_used_only_for_that_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.arrow");
        let m = random_model(50, 8_000, 8);
        m.save(&path).expect("save");
        let ivf_path = Ranker::ivf_path(&path);
        assert_eq!(ivf_path, dir.path().join("model.arrow.ivf"));
        let open_ivf = || {
            Ranker::open(&path)
                .expect("open")
                .with_retrieval(Retrieval::Ivf)
        };
        // Built here, not loaded from a file.
        let built_here = |r: &Ranker| (r.retrieval(), r.ivf_file()) == (Retrieval::Ivf, None);
        // No index file: built here.
        let built = open_ivf();
        assert!(built_here(&built));
        assert!(
            Ranker::open(&path)
                .expect("open")
                .save_ivf(&ivf_path)
                .is_err(),
            "int8 has no index"
        );
        built.save_ivf(&ivf_path).expect("save index");
        // Beside the model: loaded, and it answers as the built one.
        let loaded = open_ivf();
        assert_eq!(loaded.ivf_file(), Some(ivf_path.as_path()));
        let plain = Request::default();
        for u in 0..50u64 {
            assert_eq!(
                loaded.recommend(u, 30, &plain),
                built.recommend(u, 30, &plain)
            );
        }
        // A new model under the same name: the old index is stale, rebuilt.
        random_model(50, 8_001, 8).save(&path).expect("save");
        let fresh = open_ivf();
        assert!(built_here(&fresh));
        assert_eq!(fresh.recommend(3, 10, &plain).items.len(), 10);
        // A corrupt index file: rebuilt, never used.
        std::fs::write(&ivf_path, b"ARROW1 not really").expect("write");
        let fresh = open_ivf();
        assert!(built_here(&fresh));
        // with_built_ivf ignores a good file.
        fresh.save_ivf(&ivf_path).expect("save index");
        let again = Ranker::open(&path).expect("open").with_built_ivf();
        assert!(built_here(&again));
    }

    #[test]
    fn reduced_precision_retrieval_returns_the_exact_top_k() {
        let m = random_model(40, 6_000, 37);
        let exact = Ranker::from_model(m.clone());
        for retrieval in [Retrieval::Half, Retrieval::Int8] {
            let approx = Ranker::from_model(m.clone()).with_retrieval(retrieval);
            let ex = Request {
                exclude: (1000..1300).collect(),
                ..Request::default()
            };
            let plain = Request::default();
            let mut jobs: Vec<(u64, usize, &Request)> = Vec::new();
            for u in 0..40u64 {
                let req = if u % 2 == 0 { &plain } else { &ex };
                for k in [1usize, 20, 100] {
                    assert_eq!(
                        approx.recommend(u, k, req),
                        exact.recommend(u, k, req),
                        "{retrieval:?} user {u} k {k}"
                    );
                    jobs.push((u, k, req));
                }
            }
            assert_eq!(
                approx.recommend_batch(&batch_of(&jobs)),
                exact.recommend_batch(&batch_of(&jobs))
            );
            // More than the catalogue: everything not excluded, exactly ranked.
            assert_eq!(
                approx.recommend(3, 10_000, &ex),
                exact.recommend(3, 10_000, &ex)
            );
        }
    }
}
