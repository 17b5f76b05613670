//! Which status each ranker error maps to.

use super::*;

#[test]
fn client_mistakes_are_4xx_and_broken_models_5xx() {
    use reelkit_ranker::Error as E;
    let status = |e: E| ApiError::from(&e).status;
    assert_eq!(status(E::UnknownUser(1)), StatusCode::NOT_FOUND);
    assert_eq!(status(E::UnknownItem(1)), StatusCode::NOT_FOUND);
    assert_eq!(
        status(E::InvalidInput("k".into())),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let bad_file = E::InvalidModel {
        path: "m.arrow".into(),
        reason: "bad footer".into(),
    };
    let e = ApiError::from(&bad_file);
    assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(e.detail.contains("bad footer"), "{}", e.detail);
}
