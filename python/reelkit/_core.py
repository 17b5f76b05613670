"""Simulation, training, tuning and the served model."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from . import _reelkit
from ._frames import Inputs, frame_of_rows, read_table, to_frame

Id = Union[int, str]


def _world_text(world: Any) -> Optional[str]:
    """A world configuration as TOML text: a dict, a path, TOML text or None."""
    if world is None:
        return None
    if isinstance(world, dict):
        from ._toml import dumps

        return dumps(world)
    if isinstance(world, os.PathLike) or (isinstance(world, str) and world.endswith(".toml") and "\n" not in world):
        p = Path(world)
        if not p.exists():
            raise FileNotFoundError(f"world: no such file: {p}")
        return p.read_text()
    if isinstance(world, str):
        return world
    raise TypeError(f"world must be a dict, a TOML path or TOML text, not {type(world).__name__}")


def world_params(world: Any = None, *, days: Optional[int] = None, users: Optional[int] = None,
                 videos: Optional[int] = None, seed: Optional[int] = None) -> dict:
    """Every parameter of the simulated world (the documented defaults with
    ``world`` and the overrides applied), validated."""
    return json.loads(_reelkit.world_params(_world_text(world), days, users, videos, seed))


@dataclass
class Simulation:
    """A simulated run: one row per impression, the world's users and videos."""

    events: Any
    users: Any
    videos: Any
    params: dict

    def __repr__(self) -> str:
        return (f"Simulation({len(self.events)} impressions, {len(self.users)} users, "
                f"{len(self.videos)} videos, seed {self.params.get('seed')})")


def simulate(world: Any = None, *, days: Optional[int] = None, users: Optional[int] = None,
             videos: Optional[int] = None, seed: Optional[int] = None, policy: str = "popular",
             model: Union["Model", str, os.PathLike, None] = None, out: Union[str, os.PathLike, None] = None) -> Simulation:
    """Simulate the feed under ``policy`` (``random``, ``popular``, ``oracle``,
    or ``ranker`` with ``model``) as ``reelkit simulate`` does.

    ``world``: a dict of parameters, a TOML file or TOML text (see
    :func:`world_params`); ``out``: also keep the Parquet files there.
    """
    text = _world_text(world)
    tmp = tempfile.mkdtemp(prefix="reelkit-sim-")
    try:
        model_path = None
        if isinstance(model, Model):
            model_path = os.path.join(tmp, "model.arrow")
            model.save(model_path)
        elif model is not None:
            model_path = str(model)
        target = str(out) if out is not None else os.path.join(tmp, "run")
        _reelkit.simulate(target, text, days, users, videos, seed, policy, model_path)
        sim = Simulation(
            events=read_table(os.path.join(target, "events.parquet")),
            users=read_table(os.path.join(target, "users.parquet")),
            videos=read_table(os.path.join(target, "videos.parquet")),
            params=world_params(text, days=days, users=users, videos=videos, seed=seed),
        )
        return sim
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _source(inputs: Inputs, interactions: Any, events: Any, user_col: str, item_col: str,
            weight_col: Optional[str], ts_col: Optional[str]) -> tuple:
    """The native source: a file, whether it is an event log, the columns."""
    if (interactions is None) == (events is None):
        raise ValueError("give exactly one of interactions= or events=")
    if events is not None:
        path, is_events = inputs.path(events, "events"), True
    else:
        path, is_events = inputs.path(interactions, "interactions"), False
    return (path, is_events, user_col, item_col, weight_col, ts_col)


def train(interactions: Any = None, *, events: Any = None, user_col: str = "user_id", item_col: str = "item_id",
          weight_col: Optional[str] = None, ts_col: Optional[str] = None, algo: str = "ials",
          factors: Optional[int] = None, epochs: int = 15, reg: Optional[float] = None, alpha: float = 1.0,
          cg_steps: int = 3, reg_exponent: float = 0.0, learning_rate: float = 0.05, seed: int = 42,
          pop_bias: float = 0.0, weights: str = "linear", per_surface: bool = False, specific: str = "auto",
          item_specific: str = "auto") -> "Model":
    """Train a ranker, as ``reelkit train`` does.

    ``interactions``: a frame or file of ``user_col, item_col[, weight_col]``
    (ids may be strings); or ``events``: a reelkit event log, weighted by
    engagement (the value model is fitted too). ``algo``: ials, bpr or ease.
    ``weights``: how ``weight_col`` becomes a training weight: linear, log
    (1 + ln(1 + w)) or binary. Ctrl-C stops training between epochs.

    ``per_surface=True`` (events, ials): the unified model of ``reelkit train
    --per-surface``, a vector per user and surface; ``specific`` and
    ``item_specific`` are each surface's share of the users' and the videos'
    vectors that is the surface's own: ``"auto"`` (chosen on the log's last
    day), one share (``"0.3"``) or one per surface
    (``"reels=0.1,feed=0,watch=0.8"``). ``Model.recommend(surface=...)``
    ranks with them.
    """
    with Inputs() as inputs:
        source = _source(inputs, interactions, events, user_col, item_col, weight_col, ts_col)
        native = _reelkit.train(source, algo, factors, epochs, reg, alpha, cg_steps, reg_exponent, learning_rate,
                                seed, pop_bias, weights, (specific, item_specific) if per_surface else None)
    return Model(native)


@dataclass
class Tuned:
    """The outcome of :func:`tune`: the chosen model (trained on all the
    data), every setting tried and the choice."""

    model: "Model"
    trials: Any
    chosen: dict

    def __repr__(self) -> str:
        return (f"Tuned({self.chosen['chosen']}: ndcg {self.chosen['ndcg']:.4f} ± {self.chosen['ndcg_se']:.4f}, "
                f"{self.chosen['settings_tried']} settings)")


def tune(interactions: Any = None, *, events: Any = None, user_col: str = "user_id", item_col: str = "item_id",
         weight_col: Optional[str] = None, ts_col: Optional[str] = None, algo: str = "auto",
         weights: str = "auto", budget: float = 80.0, k: int = 10, validation: float = 0.2,
         seed: int = 42) -> Tuned:
    """Search settings on a validation split and train the chosen one on
    everything, as ``reelkit tune`` does (NDCG@k, per-user holdout, the
    simplest within one standard error of the best). ``budget`` is in modeled
    seconds of work on a reference 2-core machine, so the same call chooses
    the same model on any machine and thread count."""
    with Inputs() as inputs:
        source = _source(inputs, interactions, events, user_col, item_col, weight_col, ts_col)
        native, trials, best = _reelkit.tune(source, algo, weights, budget, k, validation, seed)
    rows = []
    for t in json.loads(trials):
        rows.append({"stage": t["stage"], "model": t["candidate"]["model"], "weights": t["weighting"],
                     "pop_bias": t["pop_bias"], "ndcg": t["ndcg"], "ndcg_se": t["ndcg_se"],
                     "recall": t["recall"], "seconds": t["seconds"], "work": t["work"],
                     "setting": json.dumps(t["candidate"])})
    return Tuned(model=Model(native), trials=frame_of_rows(rows), chosen=json.loads(best))


def _ids(values: Any) -> list:
    if hasattr(values, "to_list"):
        values = values.to_list()
    elif hasattr(values, "tolist"):
        values = values.tolist()
    out = list(values)
    for v in out:
        if not isinstance(v, (int, str)) or isinstance(v, bool):
            raise TypeError(f"ids are ints or strings, got {type(v).__name__} ({v!r})")
    return out


class Model:
    """A trained model, served in process by the same ranker as ``reelkit
    serve``: recommendations, similar items, scores, and its factors as
    numpy arrays that share the model's memory."""

    def __init__(self, native: "_reelkit.Model") -> None:
        self._m = native

    @classmethod
    def load(cls, path: Union[str, os.PathLike], retrieval: str = "exact") -> "Model":
        """Open a model file; ``retrieval``: exact, f16, int8 or ivf."""
        return cls(_reelkit.Model.load(str(path), retrieval))

    def with_retrieval(self, retrieval: str) -> "Model":
        """The same model retrieving with exact, f16, int8 or ivf."""
        return Model(self._m.with_retrieval(retrieval))

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the model file (atomically)."""
        self._m.save(str(path))

    @classmethod
    def from_factors(cls, user_ids: Sequence[Id], user_factors: Any, item_ids: Sequence[Id],
                     item_factors: Any) -> "Model":
        """A model of factors trained elsewhere (implicit, Spark): scores are
        their dot products."""
        u = np.ascontiguousarray(np.asarray(user_factors), dtype="<f4")
        v = np.ascontiguousarray(np.asarray(item_factors), dtype="<f4")
        if u.ndim != 2 or v.ndim != 2:
            raise ValueError(f"factors are 2-D arrays, got {u.ndim}-D and {v.ndim}-D")
        if u.shape[1] != v.shape[1]:
            raise ValueError(f"user factors have {u.shape[1]} columns, item factors {v.shape[1]}: one dimension")
        uid, iid = _ids(user_ids), _ids(item_ids)
        if len(uid) != u.shape[0] or len(iid) != v.shape[0]:
            raise ValueError(f"{len(uid)} user ids for {u.shape[0]} rows, {len(iid)} item ids for {v.shape[0]} rows")
        return cls(_reelkit.Model.from_factors(uid, u.tobytes(), iid, v.tobytes(), u.shape[1]))

    @classmethod
    def import_factors(cls, users: Union[str, os.PathLike], items: Union[str, os.PathLike]) -> "Model":
        """A model of factor tables on disk: Spark MLlib ALS's saved
        ``userFactors``/``itemFactors`` (``id``, ``features``) or id + one
        column per dimension (as ``reelkit import-factors``)."""
        for p, name in ((users, "users"), (items, "items")):
            if not Path(p).exists():
                raise FileNotFoundError(f"`{name}`: no such file or directory: {p}")
        return cls(_reelkit.Model.import_factors(str(users), str(items)))

    def recommend(self, users: Optional[Iterable[Id]] = None, k: int = 10, *, exclude: Any = None,
                  user_col: str = "user_id", item_col: str = "item_id", surface: Optional[str] = None):
        """Top ``k`` items per user: a frame ``user_id, item_id, rank, score``
        (all users when ``users`` is None; an unknown user gets the popular
        fallback). ``exclude``: a frame or file of (user, item) pairs not to
        recommend, e.g. the training interactions."""
        ids = None if users is None else _ids(users)
        with Inputs() as inputs:
            path = None if exclude is None else inputs.path(exclude, "exclude")
            stream = self._m.recommend(ids, k, path, user_col, item_col, surface)
        return to_frame(stream)

    def similar_items(self, item: Id, k: int = 10):
        """The ``k`` items closest to ``item`` by embedding: ``item_id, rank, score``."""
        return to_frame(self._m.similar_items(item, k))

    def score(self, user: Id, items: Sequence[Id]) -> np.ndarray:
        """Scores of ``items`` for ``user`` as a ranking shows them (NaN for
        an unknown item); ``KeyError`` for an unknown user."""
        s = self._m.score(user, _ids(items))
        return np.array([np.nan if x is None else x for x in s], dtype=np.float32)

    @property
    def user_factors(self) -> np.ndarray:
        """Users × dim, float32, read-only, sharing the model's memory."""
        return np.asarray(self._m.user_factors)

    @property
    def item_factors(self) -> np.ndarray:
        """Items × dim, float32, read-only, sharing the model's memory."""
        return np.asarray(self._m.item_factors)

    @property
    def user_ids(self) -> list:
        """User ids by row of :attr:`user_factors`."""
        return self._m.user_ids

    @property
    def item_ids(self) -> list:
        """Item ids by row of :attr:`item_factors`."""
        return self._m.item_ids

    @property
    def dim(self) -> int:
        return self._m.dim

    @property
    def n_users(self) -> int:
        return self._m.n_users

    @property
    def n_items(self) -> int:
        return self._m.n_items

    @property
    def retrieval(self) -> str:
        return self._m.retrieval

    @property
    def surfaces(self) -> list:
        return self._m.surfaces

    @property
    def meta(self) -> dict:
        """How the model was made: parameters, source."""
        return json.loads(self._m.meta_json)

    def __repr__(self) -> str:
        return repr(self._m)
