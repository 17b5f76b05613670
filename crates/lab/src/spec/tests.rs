//! Tests of specs: every key checked before anything runs.

use super::*;
use crate::recipe::{ItemVectors, Judge, Retrain, Specific};

const GOOD: &str = r#"
name = "t"
seed = 3
[world]
users = 200
[pre_period]
days = 3
[experiment]
days = 2
[[arms]]
name = "popular"
recipe = "popular"
[[arms]]
name = "siloed"
recipe = "siloed"
factors = 8
[[arms]]
name = "unified"
recipe = "unified"
retrain = "never"
[analysis]
compare = ["unified vs siloed"]
"#;

fn spec(text: &str) -> ExperimentSpec {
    ExperimentSpec::from_toml(text, Path::new(".")).expect("parses")
}

fn err(text: &str) -> String {
    spec(text)
        .check()
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn a_good_spec_checks() -> Result<()> {
    let s = spec(GOOD).check()?;
    assert_eq!(s.world.users, 200);
    assert_eq!(s.world.days, 5, "pre-period + experiment");
    assert_eq!(s.world.seed, 3);
    assert_eq!(s.arms.len(), 3);
    assert!((s.arms[1].share - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(
        s.comparisons(),
        vec![
            ("siloed", "popular"),
            ("unified", "popular"),
            ("unified", "siloed")
        ]
    );
    match &s.arms[1].recipe {
        Recipe::Siloed(t) => assert_eq!(t.train.factors, 8),
        other => panic!("{other:?}"),
    }
    match &s.arms[2].recipe {
        Recipe::Unified(t) => assert_eq!(t.retrain, Retrain::Never),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn bad_specs_name_the_key_and_what_is_allowed() {
    let cases: [(&str, &str, &[&str]); 9] = [
        (
            "recipe = \"siloed\"",
            "recipe = \"silo\"",
            &[
                "arms.siloed.recipe",
                "random, popular, oracle, siloed, unified",
                "silo",
            ],
        ),
        (
            "name = \"unified\"",
            "name = \"siloed\"",
            &["arms.siloed.name", "named twice"],
        ),
        (
            "[analysis]",
            "[analysis]\nalpha = 1.5",
            &["analysis.alpha", "1.5"],
        ),
        (
            "users = 200",
            "users = 200\nsurface_taste_divergence = 2",
            &["world.surface_taste_divergence", "0 ..= 1", "2"],
        ),
        ("users = 200", "userz = 200", &["userz"]),
        (
            "retrain = \"never\"",
            "retrain = \"weekly\"",
            &["arms.unified.retrain", "daily, never", "weekly"],
        ),
        (
            "recipe = \"popular\"",
            "recipe = \"popular\"\nfactors = 8",
            &["arms.popular.factors", "only trained recipes"],
        ),
        (
            "compare = [\"unified vs siloed\"]",
            "compare = [\"unified vs silo\"]",
            &["analysis.compare", "silo", "popular, siloed, unified"],
        ),
        (
            "factors = 8",
            "factors = 0",
            &["arms.siloed.factors", "1 ..= 1024", "0"],
        ),
    ];
    for (from, to, want) in cases {
        assert!(GOOD.contains(from), "{from}");
        let msg = err(&GOOD.replacen(from, to, 1));
        for w in want {
            assert!(msg.contains(w), "`{to}`: {msg} lacks {w}");
        }
    }
    // Shares: all or none, summing to 1.
    let shares = GOOD
        .replacen(
            "recipe = \"popular\"",
            "recipe = \"popular\"\nshare = 0.5",
            1,
        )
        .replacen("factors = 8", "factors = 8\nshare = 0.3", 1)
        .replacen("retrain = \"never\"", "retrain = \"never\"\nshare = 0.3", 1);
    let msg = err(&shares);
    assert!(
        msg.contains("arms.*.share") && msg.contains("sum to 1"),
        "{msg}"
    );
    let some = GOOD.replacen(
        "recipe = \"popular\"",
        "recipe = \"popular\"\nshare = 0.5",
        1,
    );
    let msg = err(&some);
    assert!(msg.contains("siloed, unified"), "{msg}");
}

#[test]
fn left_out_sections_keep_their_defaults() -> Result<()> {
    let s = spec("[[arms]]\nname = \"a\"\nrecipe = \"popular\"\n[[arms]]\nname = \"b\"\nrecipe = \"random\"\n")
        .check()?;
    assert_eq!((s.pre_days, s.days), (7, 7));
    assert_eq!(s.world.users, 2_000, "small scale");
    assert_eq!(s.alpha, 0.05);
    // With defaults in place, the real mistake is the one reported.
    let one = "[[arms]]\nname = \"a\"\nrecipe = \"popular\"\n";
    let msg = err(one);
    assert!(msg.contains("arms") && msg.contains("2 to 8"), "{msg}");
    let msg = ExperimentSpec::from_toml("name = \n", Path::new("."))
        .expect_err("syntax")
        .to_string();
    assert!(msg.contains("line 1"), "{msg}");
    Ok(())
}

#[test]
fn set_reaches_world_arms_and_sections() -> Result<()> {
    let mut s = spec(GOOD);
    s.set("world.surface_taste_divergence", parse_value("0.75"))?;
    s.set("arms.unified.factors", parse_value("16"))?;
    s.set("experiment.days", parse_value("3"))?;
    let v = s.check()?;
    assert_eq!(v.world.surface_taste_divergence, 0.75);
    assert_eq!(v.days, 3);
    match &v.arms[2].recipe {
        Recipe::Unified(t) => assert_eq!(t.train.factors, 16),
        other => panic!("{other:?}"),
    }
    // An integer where a float is expected is fine; unknown keys and
    // arms are refused.
    s.set("world.surface_taste_divergence", parse_value("1"))?;
    assert_eq!(s.check()?.world.surface_taste_divergence, 1.0);
    let e = s
        .set("arms.nope.factors", parse_value("1"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no arm named `nope`") && e.contains("popular, siloed, unified"),
        "{e}"
    );
    // Arrays and inline tables, as in the spec file; a malformed one is
    // the string it looks like, which the key's type then refuses.
    s.set("arms.unified.specific_grid", parse_value("[0, 0.5,1]"))?;
    match &s.check()?.arms[2].recipe {
        Recipe::Unified(t) => assert_eq!(
            t.specific,
            Specific::Auto {
                grid: vec![0.0, 0.5, 1.0]
            }
        ),
        other => panic!("{other:?}"),
    }
    let mut f = spec(GOOD);
    f.set(
        "arms.unified.specific",
        parse_value("{reels=0.1,feed=0,watch=1}"),
    )?;
    match &f.check()?.arms[2].recipe {
        Recipe::Unified(t) => assert_eq!(t.specific, Specific::Fixed(vec![0.1, 0.0, 1.0])),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_value("[0, 0.5"),
        toml::Value::String("[0, 0.5".into())
    );
    s.set("arms.unified.specific_grid", parse_value("[0, 0.5"))?;
    let e = s.check().unwrap_err().to_string();
    assert!(e.contains("specific_grid"), "{e}");
    // Video vectors: a hierarchical arm's key, with a closed set of values.
    let mut v = spec(GOOD);
    v.set("arms.unified.item_vectors", parse_value("shared"))?;
    match &v.check()?.arms[2].recipe {
        Recipe::Unified(t) => assert_eq!(t.item_vectors, ItemVectors::Shared),
        other => panic!("{other:?}"),
    }
    v.set("arms.unified.item_vectors", parse_value("own"))?;
    let e = v.check().unwrap_err().to_string();
    assert!(
        e.contains("arms.unified.item_vectors") && e.contains("per_surface, shared"),
        "{e}"
    );
    v.set("arms.unified.item_vectors", parse_value("shared"))?;
    v.set("arms.unified.user_vectors", parse_value("shared"))?;
    let e = v.check().unwrap_err().to_string();
    assert!(
        e.contains("arms.unified.item_vectors") && e.contains("hierarchical"),
        "{e}"
    );
    // Video shares: a surface the world does not have, or out of range.
    let mut x = spec(GOOD);
    x.set(
        "arms.unified.item_specific",
        parse_value("{reels=0,feed=0,shorts=1}"),
    )?;
    let e = x.check().unwrap_err().to_string();
    assert!(e.contains("arms.unified.item_specific.shorts"), "{e}");
    x.set("arms.unified.item_specific", parse_value("1.5"))?;
    let e = x.check().unwrap_err().to_string();
    assert!(
        e.contains("arms.unified.item_specific") && e.contains("[0, 1]"),
        "{e}"
    );
    x.set(
        "arms.unified.item_specific",
        parse_value("{reels=0,feed=0,watch=1}"),
    )?;
    match &x.check()?.arms[2].recipe {
        Recipe::Unified(t) => assert_eq!(t.item_specific, Specific::Fixed(vec![0.0, 0.0, 1.0])),
        other => panic!("{other:?}"),
    }
    x.set("arms.unified.item_vectors", parse_value("shared"))?;
    let e = x.check().unwrap_err().to_string();
    assert!(e.contains("arms.unified.item_specific"), "{e}");
    let mut w = spec(GOOD);
    w.set("arms.siloed.item_vectors", parse_value("shared"))?;
    let e = w.check().unwrap_err().to_string();
    assert!(e.contains("arms.siloed.item_vectors"), "{e}");
    let mut t = spec(GOOD);
    t.set("world.surface_taste_divergenc", parse_value("0.5"))?;
    let e = t.check().unwrap_err().to_string();
    assert!(e.contains("surface_taste_divergenc"), "{e}");
    Ok(())
}

/// `explore_uniform` on any arm (built-in or trained): the logging policy
/// for off-policy evaluation. Outside (0, 1) it is refused by key.
#[test]
fn any_arm_may_explore_uniformly_within_zero_and_one() -> Result<()> {
    let on = |arm: &str, value: &str| {
        GOOD.replacen(
            &format!("name = \"{arm}\"\nrecipe = \"{arm}\""),
            &format!("name = \"{arm}\"\nrecipe = \"{arm}\"\nexplore_uniform = {value}"),
            1,
        )
    };
    for arm in ["popular", "siloed"] {
        let v = spec(&on(arm, "0.1")).check()?;
        let explored: Vec<Option<f64>> = v.arms().iter().map(|a| a.explore_uniform).collect();
        assert_eq!(
            explored.iter().filter(|e| **e == Some(0.1)).count(),
            1,
            "{arm}"
        );
        for bad in ["0.0", "1.0", "-0.2", "nan"] {
            let e = err(&on(arm, bad));
            assert!(e.contains(&format!("arms.{arm}.explore_uniform")), "{e}");
        }
    }
    Ok(())
}

#[test]
fn shares_are_judged_on_the_control_unless_an_arm_asks_for_its_own_log() -> Result<()> {
    let judged = |s: &ExperimentSpec| -> Result<Judge> {
        match &s.clone().check()?.arms[2].recipe {
            Recipe::Unified(t) => Ok(t.shares_judged_on),
            other => panic!("{other:?}"),
        }
    };
    let mut x = spec(GOOD);
    assert_eq!(judged(&x)?, Judge::Control);
    x.set("arms.unified.shares_judged_on", parse_value("own"))?;
    assert_eq!(judged(&x)?, Judge::Own);
    for (key, value, needle) in [
        ("arms.unified.shares_judged_on", "mine", "control, own"),
        (
            "arms.siloed.shares_judged_on",
            "own",
            "only the unified recipe",
        ),
    ] {
        let mut y = spec(GOOD);
        y.set(key, parse_value(value))?;
        let e = y.check().unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(needle), "{e}");
    }
    // An ablation chooses no share.
    x.set("arms.unified.user_vectors", parse_value("shared"))?;
    let e = x.check().unwrap_err().to_string();
    assert!(
        e.contains("arms.unified.shares_judged_on") && e.contains("hierarchical"),
        "{e}"
    );
    Ok(())
}
