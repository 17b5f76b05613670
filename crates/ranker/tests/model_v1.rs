//! A model file written by the last build of format version 1 still reads.
//!
//! Fixture `fixtures/model_v1.arrow`: written by reelkit at commit c5b277d
//! (format version 1, before per-surface models) with
//! `reelkit train --interactions tiny.csv --factors 4 --epochs 3 --out model_v1.arrow`,
//! where `tiny.csv` is `user_id,item_id` with the rows 1,10 1,11 2,10 2,12
//! 3,11 3,12 4,13 4,10.

use std::path::Path;

use reelkit_ranker::{MappedModel, Ranker, Request};

#[test]
fn a_version_1_file_reads_and_serves() -> Result<(), Box<dyn std::error::Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_v1.arrow");
    let m = MappedModel::open(&path)?;
    assert_eq!(m.format_version, 1);
    assert_eq!(m.dim, 4);
    assert_eq!(m.users.ids(), [1, 2, 3, 4]);
    assert_eq!(m.items.ids(), [10, 11, 12, 13]);
    assert!(m.surfaces.is_none());
    assert_eq!(&m.item_counts[..], [3, 2, 2, 1]);
    // It serves: user 1 has seen 10 and 11; what is left is 12 and 13.
    let r = Ranker::open(&path)?;
    let seen = Request {
        exclude: vec![10, 11],
        ..Request::default()
    };
    let recs = r.recommend(1, 5, &seen);
    assert!(!recs.fallback);
    let mut got: Vec<u64> = recs.items.iter().map(|x| x.item_id).collect();
    got.sort_unstable();
    assert_eq!(got, vec![12, 13]);
    Ok(())
}
