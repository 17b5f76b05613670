"""A/B analysis: the report ``reelkit ab analyze`` writes, as an object that
renders in Jupyter; power from a pre-period; the warehouse SQL."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from . import _reelkit
from ._frames import Inputs, frame_of_rows
from ._report import TextReport


def _metrics(metrics: Any) -> Optional[str]:
    """Metric definitions as TOML text: None (the built-in metrics), a path
    or TOML text."""
    if metrics is None:
        return None
    if isinstance(metrics, os.PathLike) or (isinstance(metrics, str) and "\n" not in metrics and metrics.endswith(".toml")):
        p = Path(metrics)
        if not p.exists():
            raise FileNotFoundError(f"metrics: no such file: {p}")
        return p.read_text()
    if isinstance(metrics, str):
        return metrics
    raise TypeError(f"metrics must be a TOML path or TOML text, not {type(metrics).__name__}")


class Report(TextReport):
    """An experiment's analysis: every metric's lift with its interval, the
    sample-ratio check and a decision per arm. Shows as the HTML report in
    Jupyter."""

    @property
    def decisions(self) -> list:
        """One decision per arm against the control: ship, don't ship or
        keep running, with the reasons."""
        return self.data["decisions"]

    @property
    def srm(self) -> dict:
        """The sample-ratio mismatch check."""
        return self.data["srm"]

    def to_frame(self):
        """Every metric × arm: effects, intervals, p-values, CUPED."""
        rows = [{k: v for k, v in m.items() if not isinstance(v, (dict, list))} for m in self.data["metrics"]]
        return frame_of_rows(rows)

    def daily(self):
        """The cumulative lift by day (``daily=True``)."""
        return frame_of_rows(self.data.get("daily") or [])

    def __repr__(self) -> str:
        verdicts = ", ".join(f"{d['variant']}: {d['verdict']}" for d in self.decisions)
        return f"Report({self.data['experiment']}, control {self.data['control']}; {verdicts})"


def analyze(events: Any, assignments: Any, pre_events: Any = None, *, metrics: Any = None,
            experiment: str = "experiment", control: str = "control", alpha: float = 0.05,
            correction: str = "holm", sequential: Optional[int] = None, daily: bool = False,
            segments: bool = False) -> Report:
    """Analyse an experiment, as ``reelkit ab analyze`` does: CUPED with
    ``pre_events``, ratio metrics by the delta method, SRM check, multiple
    comparisons corrected (holm, bh, none), always-valid intervals with
    ``sequential`` (the planned users). Frames or files."""
    with Inputs() as inputs:
        # Event frames are scanned in memory (their buffers shared, no copy);
        # files are scanned as the command line scans them.
        ev = inputs.frame(events, "events")
        asg = inputs.path(assignments, "assignments")
        pre = None if pre_events is None else inputs.frame(pre_events, "pre_events")
        j, md, html = _reelkit.ab_analyze(ev, asg, pre, _metrics(metrics), experiment, control, alpha,
                                          correction, sequential, daily, segments)
    return Report(j, md, html)


def power(events: Any, *, metrics: Any = None, mde: float = 0.02, alpha: float = 0.05, power: float = 0.8,
          treatment_share: float = 0.5):
    """Users needed, MDE and days for each metric from a pre-period's events,
    as ``reelkit ab power`` does: a frame, one row per metric."""
    with Inputs() as inputs:
        rows = _reelkit.ab_power(inputs.path(events, "events"), _metrics(metrics), mde, alpha, power,
                                 treatment_share)
    return frame_of_rows(json.loads(rows))


def sql(metrics: Any = None, *, dialect: str = "ansi", events_table: str = "events",
        assignments_table: str = "assignments", pre_events_table: Optional[str] = None) -> str:
    """The SQL computing the per-arm sums in a warehouse (ansi, bigquery,
    spark), as ``reelkit ab sql`` prints it."""
    return _reelkit.ab_sql(_metrics(metrics), dialect, events_table, assignments_table, pre_events_table)


def assign(users: Any, *, arms: str = "control=0.5,treatment=0.5", salt: str):
    """A ``user_id, variant`` frame: each distinct user's arm by the salted
    hash the server and ``reelkit ab assign`` use."""
    if hasattr(users, "to_list"):
        users = users.to_list()
    elif hasattr(users, "tolist"):
        users = users.tolist()
    ids = sorted({int(u) for u in users})
    variants = _reelkit.ab_assign(ids, arms, salt)
    return frame_of_rows([{"user_id": u, "variant": v} for u, v in zip(ids, variants)])
