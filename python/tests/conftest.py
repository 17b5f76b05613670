"""Shared fixtures: the committed sample, a small simulated run, the CLI binary."""
import os
import subprocess
from pathlib import Path

import pytest

import reelkit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def cli() -> str:
    """The `reelkit` binary the Rust tests built (built here when absent)."""
    for profile in ("debug", "release"):
        p = ROOT / "target" / profile / "reelkit"
        if p.exists():
            return str(p)
    subprocess.run(["cargo", "build", "-p", "reelkit"], cwd=ROOT, check=True)
    return str(ROOT / "target" / "debug" / "reelkit")


@pytest.fixture(scope="session")
def sim():
    return reelkit.simulate(days=3, users=300, videos=600, seed=7)


@pytest.fixture(scope="session")
def sample_events():
    import polars as pl

    return pl.read_parquet(ROOT / "datasets" / "sample" / "events.parquet")


def run(cli: str, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([cli, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out
