//! Tests of the model file: round trips, versions, bad files.

use super::*;
use crate::params::TrainParams;

fn model() -> Model {
    let dim = 3;
    Model {
        users: IdMap::from_ids(vec![10, 20]),
        items: IdMap::from_ids(vec![7, 8, 9, 1 << 40]),
        factors: Factors {
            dim,
            users: (0..6).map(|x| x as f32 * 0.5).collect(),
            items: (0..12).map(|x| 1.0 - x as f32 * 0.25).collect(),
            item_bias: vec![0.0, 0.1, -0.2, 0.3],
        },
        user_counts: vec![3, 4],
        item_counts: vec![1, 2, 3, 4],
        surfaces: None,
        user_keys: None,
        item_keys: None,
        meta: ModelMeta {
            params: TrainParams::default(),
            fingerprint: "abc".into(),
            value_model: None,
            source: "test".into(),
            specific: None,
            item_specific: None,
        },
    }
}

fn surface_model() -> Model {
    let mut m = model();
    m.surfaces = Some(SurfaceVectors {
        names: vec!["reels".into(), "feed".into(), "watch".into()],
        vectors: (0..18).map(|x| x as f32 * -0.125).collect(),
        counts: vec![1, 0, 2, 3, 0, 1],
    });
    m.meta.specific = Some(vec![0.1, 0.0, 0.75]);
    m
}

#[test]
fn surface_vectors_round_trip_and_are_checked() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    let path = dir.path().join("s.arrow");
    let m = surface_model();
    m.save(&path)?;
    let back = MappedModel::open(&path)?;
    assert_eq!(back.format_version, 2);
    let sv = back.surfaces.as_ref().expect("surfaces read back");
    assert_eq!(sv.names, ["reels", "feed", "watch"]);
    let want = m
        .surfaces
        .as_ref()
        .map(|s| s.vectors.clone())
        .unwrap_or_default();
    for u in 0..2 {
        for s in 0..3 {
            assert_eq!(
                &sv.vectors[s][u * 3..(u + 1) * 3],
                &want[(u * 3 + s) * 3..(u * 3 + s + 1) * 3],
                "user {u} surface {s}"
            );
            assert_eq!(sv.counts[s][u], [1, 0, 2, 3, 0, 1][u * 3 + s]);
        }
    }
    assert_eq!(back.meta.specific, Some(vec![0.1, 0.0, 0.75]));
    assert_eq!(&back.user_factors[..], &m.factors.users[..]);
    // Truncated anywhere: an error naming the file, never a panic.
    let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
    let cut = dir.path().join("cut.arrow");
    for keep in [bytes.len() / 3, bytes.len() * 2 / 3, bytes.len() - 7] {
        std::fs::write(&cut, &bytes[..keep]).map_err(|e| io_err(&cut, e))?;
        let err = MappedModel::open(&cut).expect_err("truncated");
        assert!(err.to_string().contains("cut.arrow"), "{err}");
    }
    // Vectors of the wrong length are refused at save.
    let mut short = m.clone();
    if let Some(s) = short.surfaces.as_mut() {
        s.vectors.pop();
    }
    assert!(short.save(&dir.path().join("short.arrow")).is_err());
    let mut bad = m;
    if let Some(s) = bad.surfaces.as_mut() {
        s.names[1] = "Feed,x".into();
    }
    assert!(bad.save(&dir.path().join("bad.arrow")).is_err());
    Ok(())
}

#[test]
fn string_ids_round_trip() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    let path = dir.path().join("k.arrow");
    let mut m = surface_model();
    m.item_keys = Some(vec![
        "034545104X".into(),
        "0155061224".into(),
        "é-ü".into(),
        "x".into(),
    ]);
    m.save(&path)?;
    let back = MappedModel::open(&path)?;
    let keys = back.item_keys.as_ref().expect("item keys");
    assert_eq!(keys.key(2), "é-ü");
    assert_eq!(keys.row("0155061224"), Some(1));
    assert!(back.user_keys.is_none());
    assert!(back.surfaces.is_some());
    // A model without keys has no key column at all.
    let plain = dir.path().join("p.arrow");
    model().save(&plain)?;
    assert!(MappedModel::open(&plain)?.item_keys.is_none());
    // Duplicate keys are refused at load.
    m.item_keys = Some(vec!["a".into(), "b".into(), "a".into(), "c".into()]);
    m.save(&path)?;
    let err = MappedModel::open(&path).expect_err("duplicate keys");
    assert!(err.to_string().contains("duplicate item keys"), "{err}");
    Ok(())
}

#[test]
fn version_1_files_still_read() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    let path = dir.path().join("v1.arrow");
    let m = model();
    m.write_file(&path, 1)?;
    let back = MappedModel::open(&path)?;
    assert_eq!(back.format_version, 1);
    assert!(back.surfaces.is_none());
    assert_eq!(&back.user_factors[..], &m.factors.users[..]);
    // A version 1 file claiming surfaces is not one this build wrote.
    let sm = surface_model();
    sm.write_file(&path, 1)?;
    let err = MappedModel::open(&path).expect_err("surfaces in v1");
    assert!(err.to_string().contains("version 1"), "{err}");
    Ok(())
}

#[test]
fn model_round_trips() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    let path = dir.path().join("m.arrow");
    let m = model();
    m.save(&path)?;
    let back = MappedModel::open(&path)?;
    assert_eq!(back.dim, 3);
    assert_eq!(back.users, m.users);
    assert_eq!(back.items, m.items);
    assert_eq!(&back.user_factors[..], &m.factors.users[..]);
    assert_eq!(&back.item_factors[..], &m.factors.items[..]);
    assert_eq!(&back.item_bias[..], &m.factors.item_bias[..]);
    assert_eq!(&back.item_counts[..], &m.item_counts[..]);
    assert_eq!(back.meta, m.meta);
    // Same model, same bytes: no timestamps inside.
    let path2 = dir.path().join("m2.arrow");
    m.save(&path2)?;
    let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
    assert_eq!(Some(&bytes), std::fs::read(&path2).ok().as_ref());
    // The content hash is XXH3-64 of those bytes (stable: a fixed
    // algorithm, not std's DefaultHasher), and differs for other bytes.
    assert_eq!(back.content_hash, twox_hash::XxHash3_64::oneshot(&bytes));
    let mut other = m.clone();
    other.factors.items[0] += 1.0;
    other.save(&path2)?;
    assert_ne!(MappedModel::open(&path2)?.content_hash, back.content_hash);
    Ok(())
}

#[test]
fn truncated_and_foreign_files_are_errors() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    let path = dir.path().join("m.arrow");
    model().save(&path)?;
    let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
    let cut = dir.path().join("cut.arrow");
    for keep in [0, 5, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..keep]).map_err(|e| io_err(&cut, e))?;
        let err = MappedModel::open(&cut).expect_err("truncated file must be rejected");
        assert!(err.to_string().contains("cut.arrow"), "{err}");
    }
    // Flip bytes all over the file: errors, never panics.
    for at in (0..bytes.len()).step_by(7) {
        let mut b = bytes.clone();
        b[at] ^= 0x5A;
        std::fs::write(&cut, &b).map_err(|e| io_err(&cut, e))?;
        let _ = MappedModel::open(&cut);
    }
    let foreign = dir.path().join("foreign.arrow");
    std::fs::write(&foreign, b"user_id,item_id\n1,2\n").map_err(|e| io_err(&foreign, e))?;
    assert!(MappedModel::open(&foreign).is_err());
    Ok(())
}

#[test]
fn future_versions_are_incompatible() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    let path = dir.path().join("m.arrow");
    model().write_file(&path, 9)?;
    match MappedModel::open(&path) {
        Err(Error::Incompatible { found, .. }) => assert_eq!(found, "9"),
        other => panic!("expected a version error, got {other:?}"),
    }
    Ok(())
}
