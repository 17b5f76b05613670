"""reelkit: recommendation-engine engagement experiments.

Simulate a short-video feed with counterfactual truth, train and tune a
ranker, serve it in process, analyse A/B tests and judge a candidate off-policy on an
exploring log, from a notebook. A thin
layer over the same Rust crates as the ``reelkit`` command line: the same
inputs give the same numbers.

>>> import reelkit
>>> sim = reelkit.simulate(days=2, users=200, videos=500, seed=1)
>>> model = reelkit.train(events=sim.events, epochs=3)
>>> recs = model.recommend([sim.events["user_id"][0]], k=5)
"""
from ._reelkit import __version__
from ._core import Model, Simulation, Tuned, simulate, train, tune, world_params
from . import ab, lab, ope

__all__ = ["Model", "Simulation", "Tuned", "simulate", "train", "tune", "world_params", "ab", "lab", "ope", "__version__"]
