//! Training parameters, unchecked and checked.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Training algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// Implicit ALS (Hu, Koren & Volinsky 2008) with a conjugate-gradient solver.
    Ials,
    /// Bayesian personalised ranking (Rendle et al. 2009), stratified parallel SGD.
    Bpr,
    /// EASE (Steck 2019), the closed-form item-item model, served as
    /// embeddings of at most `factors` dimensions (exact up to
    /// `min(users, items)`); `reg` is its λ. Catalogues up to
    /// [`crate::ease::EASE_MAX_ITEMS`] items.
    Ease,
}

impl std::str::FromStr for Algo {
    type Err = Error;
    fn from_str(s: &str) -> Result<Algo> {
        match s {
            "ials" | "als" => Ok(Algo::Ials),
            "bpr" => Ok(Algo::Bpr),
            "ease" => Ok(Algo::Ease),
            other => Err(Error::InvalidParam {
                field: "algo",
                allowed: "ials, bpr or ease",
                got: other.to_string(),
            }),
        }
    }
}

impl std::fmt::Display for Algo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algo::Ials => "ials",
            Algo::Bpr => "bpr",
            Algo::Ease => "ease",
        })
    }
}

/// Training parameters (unchecked: see [`TrainParams::check`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// The algorithm (iALS or BPR).
    pub algo: Algo,
    /// Embedding dimension.
    pub factors: usize,
    /// Full sweeps over the data.
    pub epochs: usize,
    /// L2 regularisation λ (EASE: its λ, on the scale of item counts).
    pub reg: f32,
    /// iALS: confidence `c = 1 + alpha · w` of an observed pair with weight `w`.
    pub alpha: f32,
    /// iALS: conjugate-gradient steps per row and sweep (warm-started).
    pub cg_steps: usize,
    /// iALS: frequency-scaled regularisation exponent ν: a row with `n` entries
    /// gets `λ (1 + n)^ν` (0 = plain iALS; Rendle et al. 2022 use ν = 1).
    pub reg_exponent: f32,
    /// BPR: learning rate.
    pub learning_rate: f32,
    /// Scale of the random initial factors.
    pub init_scale: f32,
    /// Seed of the initial factors and any sampling (same seed, same model, any thread count).
    pub seed: u64,
    /// Popularity compensation β: item `j`'s bias gains `β · s · ln(1 + n_j)`,
    /// `n_j` its training interactions and `s` the RMS score of its users'
    /// top-100 lists (so β does not depend on the model's scale; the tuner
    /// measures β in the same unit); 0 = off. Negative values lift
    /// the long tail; `tune` learns β on its validation split. Not written
    /// when 0, so models and reports without it keep their bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pop_bias: f32,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            algo: Algo::Ials,
            factors: 64,
            epochs: 15,
            reg: 1.0,
            alpha: 1.0,
            cg_steps: 3,
            reg_exponent: 0.0,
            learning_rate: 0.05,
            init_scale: 0.01,
            seed: 42,
            pop_bias: 0.0,
        }
    }
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

/// Parameters that passed [`TrainParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTrainParams(TrainParams);

impl std::ops::Deref for ValidTrainParams {
    type Target = TrainParams;
    fn deref(&self) -> &TrainParams {
        &self.0
    }
}

fn check<T: PartialOrd + ToString>(
    field: &'static str,
    v: T,
    lo: T,
    hi: T,
    allowed: &'static str,
) -> Result<()> {
    if v >= lo && v <= hi {
        Ok(())
    } else {
        Err(Error::InvalidParam {
            field,
            allowed,
            got: v.to_string(),
        })
    }
}

impl TrainParams {
    /// Checks every field; the error names the field, the allowed range and the value.
    pub fn check(self) -> Result<ValidTrainParams> {
        check("factors", self.factors, 1, 1024, "1 ..= 1024")?;
        check("epochs", self.epochs, 1, 10_000, "1 ..= 10000")?;
        check("reg", self.reg, 0.0, 1e6, "0 ..= 1e6")?;
        check("alpha", self.alpha, 0.0, 1e6, "0 ..= 1e6")?;
        check("cg_steps", self.cg_steps, 1, 1024, "1 ..= 1024")?;
        check("reg_exponent", self.reg_exponent, 0.0, 2.0, "0 ..= 2")?;
        check(
            "learning_rate",
            self.learning_rate,
            1e-6,
            10.0,
            "1e-6 ..= 10",
        )?;
        check("init_scale", self.init_scale, 0.0, 10.0, "0 ..= 10")?;
        check("pop_bias", self.pop_bias, -2.0, 2.0, "-2 ..= 2")?;
        if self.algo == Algo::Ease && self.reg <= 0.0 {
            return Err(Error::InvalidParam {
                field: "reg",
                allowed: "> 0 for ease",
                got: self.reg.to_string(),
            });
        }
        Ok(ValidTrainParams(self))
    }
}

impl ValidTrainParams {
    /// The checked parameters.
    pub fn get(&self) -> &TrainParams {
        &self.0
    }
}
