"""Off-policy evaluation: what a candidate model would earn on the log of an
exploring policy, as ``reelkit ope`` estimates it, before any A/B test."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from . import _reelkit
from ._frames import Inputs, frame_of_rows, read_table
from ._report import TextReport

ESTIMATORS = ("ips", "snips", "dr", "dm", "pdis")


class OpeReport(TextReport):
    """A candidate's estimates per metric and estimator: its value per user,
    its lift over the logging policy with bootstrap intervals, and how far
    the log supports it. Shows as the HTML report in Jupyter."""

    @property
    def agreement(self) -> float:
        """Share of logged impressions whose video the candidate would have shown there."""
        return self.data["agreement"]

    @property
    def notes(self) -> list:
        """What the candidate does not know of the log."""
        return self.data["notes"]

    def to_frame(self):
        """Every metric × estimator: value, lift and relative lift with
        their intervals, and the weights' diagnostics."""
        rows = []
        for m in self.data["metrics"]:
            d = m["diagnostics"]
            for e in m["estimates"]:
                rows.append({
                    "metric": m["metric"],
                    "estimator": e["estimator"],
                    "value": e["value"],
                    "value_lo": e["value_ci"][0],
                    "value_hi": e["value_ci"][1],
                    "lift": e["lift"],
                    "rel_lift": e["rel_lift"],
                    "rel_lift_lo": e["rel_lift_ci"][0],
                    "rel_lift_hi": e["rel_lift_ci"][1],
                    "logged_value": d["logged_value"],
                    "effective_sample_size": d["effective_sample_size"],
                    "mean_weight": d["mean_weight"],
                })
        return frame_of_rows(rows)

    @property
    def impressions(self):
        """Per logged impression, what every estimate sums over (asked for
        with ``evaluate(..., impressions=True)``, else None): the candidate's
        video at its slot, ``propensity``, ``target`` (the candidate's
        probability), ``weight``, and per metric the reward and the reward
        model's ``<metric>_q_logged`` / ``<metric>_q_candidate``."""
        return getattr(self, "_impressions", None)

    def __repr__(self) -> str:
        return (f"OpeReport({self.data['candidate']} on {self.data['log']}: "
                f"{self.data['pages']} requests, agreement {self.agreement:.3f})")


def evaluate(events: Any, model: Any, *, videos: Any = None, metrics: Sequence[str] = ("watch_ms", "liked"),
             estimators: Sequence[str] = ESTIMATORS, page_size: int = 8, bootstrap: int = 500,
             level: float = 0.95, max_weight: Optional[float] = None, seed: int = 42,
             retrieval: str = "int8", value_model: bool = False, impressions: bool = False) -> OpeReport:
    """Replay ``model`` (a :class:`reelkit.Model` or a model file) on the
    requests of ``events`` (an exploring policy's event log with a
    ``propensity`` column: a frame or a file) as ``reelkit serve`` would
    answer them, and estimate each metric per user and its lift over the
    logging policy with each estimator, as ``reelkit ope`` does. ``videos``
    (the simulator's videos frame or file) restricts the candidate to what
    each surface could show. ``impressions=True`` keeps the rows every
    estimate sums over as ``report.impressions`` (``reelkit ope --impressions``)."""
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(estimators, str):
        estimators = [estimators]
    with Inputs() as inputs:
        ev = inputs.path(events, "events")
        if isinstance(model, (str, os.PathLike)):
            m = inputs.path(model, "model")
        else:
            m = inputs.out("model.arrow")
            model.save(m)
        vids = None if videos is None else inputs.path(videos, "videos")
        rows = inputs.out("impressions.parquet") if impressions else None
        j, md, html = _reelkit.ope(ev, m, vids, list(metrics), list(estimators), page_size, bootstrap, level,
                                   max_weight, seed, retrieval, value_model, rows)
        report = OpeReport(j, md, html)
        if rows is not None:
            report._impressions = read_table(rows)
    return report


class OpeStudy(TextReport):
    """Off-policy estimates held against the simulator's truth over many
    runs (``reelkit experiment ope``): per estimator and candidate the bias,
    RMSE, interval coverage and half-width, how often the candidates came out
    in their true order, and what exploring cost. Shows as its HTML page in
    Jupyter."""

    @property
    def rates(self):
        """Per estimator and candidate (and ``all``): mean truth and estimate,
        bias with its standard error, RMSE, coverage, mean half-width."""
        return frame_of_rows(self.data["rates"])

    @property
    def ordering(self):
        """Per estimator: runs with every pair of candidates in the true
        order, their share, and whether the estimator meets the bar."""
        return frame_of_rows(self.data["ordering"])

    @property
    def trials(self):
        """Every estimate (run, candidate, estimator) beside its truth."""
        rows = [dict(t, ci_low=t["ci"][0], ci_high=t["ci"][1]) for t in self.data["trials"]]
        for r in rows:
            del r["ci"]
        return frame_of_rows(rows)

    def __repr__(self) -> str:
        return (f"OpeStudy({self.data['name']}: {self.data['runs']} runs, logger {self.data['logger']}, "
                f"candidates {', '.join(self.data['candidates'])}, unit {self.data['unit']})")


def study(spec: Any, *, logger: Optional[str] = None, candidates: Sequence[str] = (), explore: float = 0.3,
          unit: str = "page", replay: str = "own", runs: int = 100, bootstrap: int = 200, level: float = 0.95,
          set: Optional[dict] = None, out: Union[str, os.PathLike, None] = None) -> OpeStudy:
    """Hold every estimator against the truth as ``reelkit experiment ope``
    does: each run logs the spec's world under ``logger``'s ranker with
    ``explore`` of its units (``unit``: page, session, day or user) given to
    a candidate, estimates each candidate's lift in watch time per user from
    the log, and plays everyone under each candidate alone for the truth.
    ``spec``: a path, TOML text or a dict; ``set``: ``--set`` overrides;
    ``out``: keep the files (``ope_study.{json,md,html,svg}``, ``trials.csv``)."""
    from .lab import _set, _spec

    if isinstance(candidates, str):
        candidates = [candidates]
    text, base = _spec(spec)
    tmp = None if out is not None else tempfile.mkdtemp(prefix="reelkit-ope-")
    target = str(out) if out is not None else os.path.join(tmp, "study")
    try:
        j = _reelkit.lab_ope_study(text, base, _set(set), logger, list(candidates), float(explore), unit, replay,
                                   runs, bootstrap, float(level), target)
        d = Path(target)
        return OpeStudy(j, (d / "ope_study.md").read_text(), (d / "ope_study.html").read_text())
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
