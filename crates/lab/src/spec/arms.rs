//! Checking a spec's arms: names, recipes and each recipe's keys.

use reelkit_ranker::TrainParams;

use crate::error::{Error, Result};
use crate::recipe::{ItemVectors, Judge, Ranking, Recipe, Retrain, Specific, Trained, UserVectors};

use super::*;

/// Names go into reports, file names and JSON: letters, digits, `_`, `-`, `.`.
pub(super) fn check_name(key: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::spec(
            key,
            format!(
                "must be 1 to 64 letters, digits, `_`, `-` or `.`; got `{}`",
                name.escape_debug()
            ),
        ))
    }
}

pub(super) fn check_arms(raw: &[RawArm], seed: u64) -> Result<Vec<Arm>> {
    if !(2..=8).contains(&raw.len()) {
        return Err(Error::spec(
            "arms",
            format!("an experiment needs 2 to 8 [[arms]], got {}", raw.len()),
        ));
    }
    let mut arms: Vec<Arm> = Vec::with_capacity(raw.len());
    for (i, a) in raw.iter().enumerate() {
        let name = check_name(&format!("arms[{i}].name"), &a.name)?;
        if arms.iter().any(|x| x.name == name) {
            return Err(Error::spec(
                format!("arms.{name}.name"),
                format!("arm `{name}` is named twice; arm names must be unique"),
            ));
        }
        let key = |k: &str| format!("arms.{name}.{k}");
        let recipe = match a.recipe.as_str() {
            "random" => Recipe::Random,
            "popular" => Recipe::Popular,
            "oracle" => Recipe::Oracle,
            "siloed" | "unified" => {
                if a.recipe == "siloed" {
                    let set = [
                        ("user_vectors", a.user_vectors.is_some()),
                        ("item_vectors", a.item_vectors.is_some()),
                        ("item_specific", a.item_specific.is_some()),
                        ("specific", a.specific.is_some()),
                        ("specific_grid", a.specific_grid.is_some()),
                        ("shares_judged_on", a.shares_judged_on.is_some()),
                    ];
                    if let Some((k, _)) = set.iter().find(|(_, on)| *on) {
                        return Err(Error::spec(
                            key(k),
                            format!("only the unified recipe takes `{k}` (siloed models are per surface)"),
                        ));
                    }
                }
                let t = trained(a, &key, seed.wrapping_add(i as u64))?;
                if a.recipe == "siloed" {
                    Recipe::Siloed(t)
                } else {
                    Recipe::Unified(t)
                }
            }
            other => {
                return Err(Error::spec(
                    key("recipe"),
                    format!("must be one of {RECIPES}; got `{other}`"),
                ))
            }
        };
        if !matches!(recipe, Recipe::Siloed(_) | Recipe::Unified(_)) {
            let set = [
                ("retrain", a.retrain.is_some()),
                ("window_days", a.window_days.is_some()),
                ("factors", a.factors.is_some()),
                ("epochs", a.epochs.is_some()),
                ("refresh_epochs", a.refresh_epochs.is_some()),
                ("reg", a.reg.is_some()),
                ("alpha", a.alpha.is_some()),
                ("reg_exponent", a.reg_exponent.is_some()),
                ("cg_steps", a.cg_steps.is_some()),
                ("ranking", a.ranking.is_some()),
                ("user_vectors", a.user_vectors.is_some()),
                ("item_vectors", a.item_vectors.is_some()),
                ("specific", a.specific.is_some()),
                ("specific_grid", a.specific_grid.is_some()),
                ("explore", a.explore.is_some()),
            ];
            if let Some((k, _)) = set.iter().find(|(_, on)| *on) {
                return Err(Error::spec(
                    key(k),
                    format!(
                        "only trained recipes (siloed, unified) take `{k}`; `{}` is built in",
                        a.recipe
                    ),
                ));
            }
        }
        if let Some(s) = a.share {
            if !(s.is_finite() && s > 0.0 && s < 1.0) {
                return Err(Error::spec(
                    key("share"),
                    format!("must be in (0, 1), got {s}"),
                ));
            }
        }
        if let Some(e) = a.explore_uniform {
            if !(e > 0.0 && e < 1.0) {
                return Err(Error::spec(
                    key("explore_uniform"),
                    format!("the share of slots explored must be in (0, 1), got {e}"),
                ));
            }
        }
        arms.push(Arm {
            name,
            recipe,
            share: a.share.unwrap_or(0.0),
            explore_uniform: a.explore_uniform,
        });
    }
    let given = raw.iter().filter(|a| a.share.is_some()).count();
    if given == 0 {
        let n = arms.len() as f64;
        arms.iter_mut().for_each(|a| a.share = 1.0 / n);
    } else if given < arms.len() {
        let missing: Vec<&str> = raw
            .iter()
            .filter(|a| a.share.is_none())
            .map(|a| a.name.as_str())
            .collect();
        return Err(Error::spec(
            "arms.*.share",
            format!(
                "give every arm a share or none (then they are equal); missing for {}",
                missing.join(", ")
            ),
        ));
    } else {
        let total: f64 = arms.iter().map(|a| a.share).sum();
        if (total - 1.0).abs() > 1e-6 {
            let listed: Vec<String> = arms
                .iter()
                .map(|a| format!("{} {}", a.name, a.share))
                .collect();
            return Err(Error::spec(
                "arms.*.share",
                format!("shares must sum to 1, got {total} ({})", listed.join(", ")),
            ));
        }
    }
    Ok(arms)
}

/// The value `name` means among `choices` (`None` when the key is not
/// set), or an error at `key` listing the names.
fn choice<T: Copy>(
    key: &dyn Fn(&str) -> String,
    field: &str,
    name: Option<&str>,
    choices: &[(&str, T)],
    default: T,
) -> Result<T> {
    let Some(name) = name else {
        return Ok(default);
    };
    match choices.iter().find(|(n, _)| *n == name) {
        Some(&(_, v)) => Ok(v),
        None => {
            let names: Vec<&str> = choices.iter().map(|c| c.0).collect();
            Err(Error::spec(
                key(field),
                format!("must be one of {}; got `{name}`", names.join(", ")),
            ))
        }
    }
}

fn trained(a: &RawArm, key: &dyn Fn(&str) -> String, seed: u64) -> Result<Trained> {
    let d = Trained::default();
    let retrain = choice(
        key,
        "retrain",
        a.retrain.as_deref(),
        &Retrain::CHOICES,
        d.retrain,
    )?;
    let ranking = choice(
        key,
        "ranking",
        a.ranking.as_deref(),
        &Ranking::CHOICES,
        d.ranking,
    )?;
    let user_vectors = choice(
        key,
        "user_vectors",
        a.user_vectors.as_deref(),
        &UserVectors::CHOICES,
        d.user_vectors,
    )?;
    let specific = specific(a, user_vectors, key)?;
    if a.item_vectors.is_some() && user_vectors != UserVectors::Hierarchical {
        return Err(Error::spec(
            key("item_vectors"),
            "only `user_vectors = \"hierarchical\"` takes it (`shared` and `per_surface` \
             share the videos' vectors)",
        ));
    }
    let item_vectors = choice(
        key,
        "item_vectors",
        a.item_vectors.as_deref(),
        &ItemVectors::CHOICES,
        d.item_vectors,
    )?;
    if a.item_specific.is_some()
        && (user_vectors != UserVectors::Hierarchical || item_vectors != ItemVectors::PerSurface)
    {
        return Err(Error::spec(
            key("item_specific"),
            "only a hierarchical arm with `item_vectors = \"per_surface\"` takes it",
        ));
    }
    let grid = Specific::ITEM_GRID.to_vec();
    let item_specific = match item_vectors {
        ItemVectors::Shared => Specific::Fixed(vec![0.0; reelkit_logs::Surface::ALL.len()]),
        ItemVectors::PerSurface => {
            shares(a.item_specific.as_ref(), "item_specific", grid, false, key)?
        }
    };
    if a.shares_judged_on.is_some() && user_vectors != UserVectors::Hierarchical {
        return Err(Error::spec(
            key("shares_judged_on"),
            "only `user_vectors = \"hierarchical\"` chooses shares",
        ));
    }
    let shares_judged_on = choice(
        key,
        "shares_judged_on",
        a.shares_judged_on.as_deref(),
        &Judge::CHOICES,
        d.shares_judged_on,
    )?;
    let window_days = a.window_days.unwrap_or(d.window_days);
    if !(1..=365).contains(&window_days) {
        return Err(Error::spec(
            key("window_days"),
            format!("must be in 1 ..= 365, got {window_days}"),
        ));
    }
    let refresh_epochs = a.refresh_epochs.unwrap_or(d.refresh_epochs);
    if !(1..=1000).contains(&refresh_epochs) {
        return Err(Error::spec(
            key("refresh_epochs"),
            format!("must be in 1 ..= 1000, got {refresh_epochs}"),
        ));
    }
    let explore = a.explore.unwrap_or(d.explore);
    if !(0.0..=0.5).contains(&explore) {
        return Err(Error::spec(
            key("explore"),
            format!("must be in 0 ..= 0.5, got {explore}"),
        ));
    }
    let train = TrainParams {
        factors: a.factors.unwrap_or(d.train.factors),
        epochs: a.epochs.unwrap_or(d.train.epochs),
        reg: a.reg.unwrap_or(d.train.reg),
        alpha: a.alpha.unwrap_or(d.train.alpha),
        reg_exponent: a.reg_exponent.unwrap_or(d.train.reg_exponent),
        cg_steps: a.cg_steps.unwrap_or(d.train.cg_steps),
        seed,
        ..d.train.clone()
    };
    train.clone().check().map_err(|e| match e {
        reelkit_ranker::Error::InvalidParam {
            field,
            allowed,
            got,
        } => Error::spec(key(field), format!("must be in {allowed}, got {got}")),
        other => other.into(),
    })?;
    Ok(Trained {
        train,
        refresh_epochs,
        window_days,
        retrain,
        ranking,
        user_vectors,
        specific,
        item_vectors,
        item_specific,
        shares_judged_on,
        explore,
    })
}

/// A share in [0, 1] at `key`.
fn share(key: &str, v: &toml::Value) -> Result<f32> {
    let x = match v {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        other => {
            return Err(Error::spec(
                key,
                format!("must be a number in [0, 1], got {}", short_value(other)),
            ))
        }
    };
    if !(0.0..=1.0).contains(&x) {
        return Err(Error::spec(key, format!("must be in [0, 1], got {x}")));
    }
    Ok(x as f32)
}

/// A TOML value for a message, cut to 80 characters.
fn short_value(v: &toml::Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// The `specific` and `specific_grid` keys of a unified arm.
fn specific(a: &RawArm, vectors: UserVectors, key: &dyn Fn(&str) -> String) -> Result<Specific> {
    if vectors != UserVectors::Hierarchical {
        if let Some(k) = [
            ("specific", a.specific.is_some()),
            ("specific_grid", a.specific_grid.is_some()),
        ]
        .iter()
        .find(|(_, on)| *on)
        .map(|(k, _)| *k)
        {
            return Err(Error::spec(
                key(k),
                "only `user_vectors = \"hierarchical\"` takes it (`shared` is φ = 0, `per_surface` φ = 1)",
            ));
        }
    }
    let grid = match &a.specific_grid {
        None => Specific::GRID.to_vec(),
        Some(g) => {
            if g.is_empty() || g.len() > 16 {
                return Err(Error::spec(
                    key("specific_grid"),
                    format!("must list 1 to 16 shares in [0, 1], got {}", g.len()),
                ));
            }
            g.iter()
                .map(|&x| share(&key("specific_grid"), &toml::Value::Float(x)))
                .collect::<Result<Vec<f32>>>()?
        }
    };
    shares(
        a.specific.as_ref(),
        "specific",
        grid,
        a.specific_grid.is_some(),
        key,
    )
}

/// A `specific`-like key (`name`): `"auto"` (chosen from `grid`), one share
/// for every surface, or a table of one per surface.
fn shares(
    v: Option<&toml::Value>,
    name: &str,
    grid: Vec<f32>,
    grid_given: bool,
    key: &dyn Fn(&str) -> String,
) -> Result<Specific> {
    let surfaces = reelkit_logs::Surface::ALL;
    let fixed_with_grid = || {
        Error::spec(
            key("specific_grid"),
            format!("is for `{name} = \"auto\"`; the shares are fixed here"),
        )
    };
    match v {
        None => Ok(Specific::Auto { grid }),
        Some(toml::Value::String(s)) if s == "auto" => Ok(Specific::Auto { grid }),
        Some(v @ (toml::Value::Float(_) | toml::Value::Integer(_))) => {
            if grid_given && name == "specific" {
                return Err(fixed_with_grid());
            }
            let x = share(&key(name), v)?;
            Ok(Specific::Fixed(vec![x; surfaces.len()]))
        }
        Some(toml::Value::Table(t)) => {
            if grid_given && name == "specific" {
                return Err(fixed_with_grid());
            }
            let names: Vec<&str> = surfaces.iter().map(|s| s.as_str()).collect();
            if let Some(k) = t.keys().find(|k| !names.contains(&k.as_str())) {
                return Err(Error::spec(
                    key(&format!("{name}.{}", short_key(k))),
                    format!(
                        "the world has no surface `{}` (surfaces: {})",
                        short_key(k),
                        names.join(", ")
                    ),
                ));
            }
            let mut out = Vec::with_capacity(names.len());
            for n in &names {
                let v = t.get(*n).ok_or_else(|| {
                    Error::spec(
                        key(name),
                        format!(
                            "give a share for every surface ({}); `{n}` is missing",
                            names.join(", ")
                        ),
                    )
                })?;
                out.push(share(&key(&format!("{name}.{n}")), v)?);
            }
            Ok(Specific::Fixed(out))
        }
        Some(other) => Err(Error::spec(
            key(name),
            format!(
                "must be \"auto\", a share in [0, 1], or a table of one per surface; got {}",
                short_value(other)
            ),
        )),
    }
}

/// A key for a message, cut to 40 characters.
fn short_key(k: &str) -> String {
    match k.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &k[..at]),
        None => k.to_string(),
    }
}
