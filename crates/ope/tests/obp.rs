//! reelkit-ope's estimates per impression equal Open Bandit Pipeline's on
//! the same rows (fixture: bench/fixtures/gen_ope_fixture.py, which also
//! checks obp against the textbook formulas before writing it).

use reelkit_ope::{estimate, Estimator, Log, Options, RewardModel};
use serde_json::Value;

fn column(case: &Value, key: &str) -> Vec<f64> {
    case[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

#[test]
fn per_impression_values_equal_obps() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/obp_values.json"
    ))?;
    let fixture: Value = serde_json::from_str(&text)?;
    let cases = fixture["cases"].as_array().ok_or("no cases")?;
    assert_eq!(cases.len(), 2);
    for case in cases {
        let user: Vec<u64> = column(case, "user").iter().map(|&u| u as u64).collect();
        let (reward, propensity, target) = (
            column(case, "reward"),
            column(case, "propensity"),
            column(case, "target"),
        );
        let (q_logged, q_target) = (column(case, "q_logged"), column(case, "q_target"));
        assert_eq!(user.len(), 360);
        let log = Log {
            user: &user,
            reward: &reward,
            propensity: &propensity,
            target: &target,
            reward_model: Some(RewardModel {
                logged: &q_logged,
                target: &q_target,
            }),
            session_weight: None,
        };
        let opts = Options {
            bootstrap: 0,
            ..Options::default()
        };
        let report = estimate(&log, &Estimator::PER_IMPRESSION, &opts)?;
        for e in &report.estimates {
            let want = case["per_impression"][e.estimator.as_str()]
                .as_f64()
                .ok_or("missing value")?;
            assert!(
                (e.per_impression - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{} {}: {} vs obp {want}",
                case["name"],
                e.estimator.as_str(),
                e.per_impression
            );
            // Per user: three impressions a user.
            assert!((e.value - 3.0 * e.per_impression).abs() <= 1e-9 * e.value.abs().max(1.0));
        }
    }
    Ok(())
}
