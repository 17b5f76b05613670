"""Experiments with counterfactual truth: a spec run end to end (simulate,
train the arms, A/B test, compare with the simulator's truth) and sweeps."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from . import _reelkit
from ._frames import frame_of_rows
from .ab import Report


def _spec(spec: Any) -> tuple[str, str]:
    """(TOML text, base directory) of a spec: a path, TOML text or a dict."""
    if isinstance(spec, dict):
        from ._toml import dumps

        return dumps(spec), os.getcwd()
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec and spec.endswith(".toml")):
        p = Path(spec)
        if not p.exists():
            raise FileNotFoundError(f"spec: no such file: {p}")
        return p.read_text(), str(p.resolve().parent)
    if isinstance(spec, str):
        return spec, os.getcwd()
    raise TypeError(f"spec must be a path, TOML text or a dict, not {type(spec).__name__}")


def _set(overrides: Optional[dict]) -> list:
    return [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in (overrides or {}).items()]


@dataclass
class Outcome:
    """An experiment run: its summary, each estimate beside the truth, the
    ground truth and the A/B report; ``dir`` holds every file written."""

    summary: dict
    estimates: Any
    truth: dict
    report: Report
    dir: Optional[str]

    def _repr_html_(self) -> str:
        return self.report._repr_html_()

    def __repr__(self) -> str:
        return f"Outcome({self.summary.get('name')}: {len(self.summary.get('estimates', []))} estimates)"


def run(spec: Any, *, set: Optional[dict] = None, out: Union[str, os.PathLike, None] = None) -> Outcome:
    """Run an experiment spec as ``reelkit experiment run`` does.

    ``spec``: a path, TOML text or a dict; ``set``: ``{"key.dotted": value}``
    overrides (as ``--set``); ``out``: keep the files there.
    """
    text, base = _spec(spec)
    tmp = None if out is not None else tempfile.mkdtemp(prefix="reelkit-lab-")
    target = str(out) if out is not None else os.path.join(tmp, "run")
    try:
        summary = json.loads(_reelkit.lab_run(text, base, _set(set), target))
        d = Path(target)
        report = Report((d / "report.json").read_text(), (d / "report.md").read_text(),
                        (d / "report.html").read_text())
        truth = json.loads((d / "ground_truth.json").read_text())
        return Outcome(summary=summary, estimates=frame_of_rows(summary["estimates"]), truth=truth,
                       report=report, dir=None if tmp else target)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def sweep(spec: Any, param: str, values: Sequence[Any], *, set: Optional[dict] = None,
          out: Union[str, os.PathLike, None] = None):
    """Rerun a spec over one key's values, as ``reelkit experiment sweep``
    does: a frame of every estimate beside its truth, per value."""
    text, base = _spec(spec)
    tmp = None if out is not None else tempfile.mkdtemp(prefix="reelkit-sweep-")
    target = str(out) if out is not None else os.path.join(tmp, "sweep")
    try:
        values = [v if isinstance(v, str) else json.dumps(v) for v in values]
        s = json.loads(_reelkit.lab_sweep(text, base, _set(set), param, values, target))
        return frame_of_rows(s["rows"])
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
