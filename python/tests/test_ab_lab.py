"""A/B analysis, power, SQL and experiment runs: the same numbers as the CLI."""
import json

import polars as pl
import pytest

import reelkit
from conftest import run


@pytest.fixture(scope="module")
def experiment(sample_events):
    users = sample_events["user_id"].unique()
    return sample_events, reelkit.ab.assign(users, arms="control=0.5,treatment=0.5", salt="py")


def test_assignment_is_the_clis(tmp_path, cli, sample_events, root):
    asg = reelkit.ab.assign(sample_events["user_id"].unique(), arms="control=0.5,treatment=0.5", salt="py")
    run(cli, "ab", "assign", "--users", str(root / "datasets" / "sample" / "users.parquet"),
        "--arms", "control=0.5,treatment=0.5", "--salt", "py", "--out", str(tmp_path / "a.csv"))
    want = pl.read_csv(tmp_path / "a.csv").filter(pl.col("user_id").is_in(asg["user_id"].to_list()))
    assert dict(zip(asg["user_id"], asg["variant"])) == dict(zip(want["user_id"], want["variant"]))


def test_report_equals_the_clis(tmp_path, cli, experiment):
    events, asg = experiment
    rep = reelkit.ab.analyze(events, asg, daily=True)
    events.write_parquet(tmp_path / "e.parquet")
    asg.write_csv(tmp_path / "a.csv")
    run(cli, "ab", "analyze", "--events", str(tmp_path / "e.parquet"), "--assignments", str(tmp_path / "a.csv"),
        "--daily", "--out", str(tmp_path / "out"))
    assert rep.data == json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep._repr_html_() == (tmp_path / "out" / "report.html").read_text()
    assert rep.decisions[0]["variant"] == "treatment" and rep.decisions[0]["verdict"]
    f = rep.to_frame()
    assert {"metric", "rel_effect", "rel_ci_low", "p_value"} <= set(f.columns)
    assert rep.daily().height > 0


def test_bad_experiments_are_named(experiment):
    events, asg = experiment
    twice = pl.concat([asg, asg.head(1).with_columns(pl.lit("control_b").alias("variant"))])
    with pytest.raises(ValueError, match="two arms"):
        reelkit.ab.analyze(events, twice)
    with pytest.raises(ValueError, match="watch_ms"):
        reelkit.ab.analyze(events.drop("watch_ms"), asg)
    with pytest.raises(ValueError, match="correction"):
        reelkit.ab.analyze(events, asg, correction="bonferroni-ish")
    with pytest.raises(ValueError, match="metrics"):
        reelkit.ab.analyze(events, asg, metrics="[[metric]]\nname = 3\n")


def test_power_and_sql(tmp_path, cli, sample_events, root):
    p = reelkit.ab.power(sample_events, mde=0.05)
    out = run(cli, "ab", "power", "--events", str(root / "datasets" / "sample" / "events.parquet"), "--mde", "0.05")
    assert p.to_dicts() == json.loads(out.stdout)
    with pytest.raises(ValueError, match="mde"):
        reelkit.ab.power(sample_events, mde=0)
    sql = reelkit.ab.sql(dialect="spark", events_table="db.events")
    assert "db.events" in sql and sql == run(cli, "ab", "sql", "--dialect", "spark", "--events-table", "db.events").stdout
    with pytest.raises(ValueError, match="dialect"):
        reelkit.ab.sql(dialect="oracle")


SPEC = """
name = "tiny"
seed = 5

[world]
users = 300
videos = 600
creators = 100

[pre_period]
days = 2
policy = "popular"

[experiment]
days = 2
control = "popular"

[[arms]]
name = "popular"
recipe = "popular"

[[arms]]
name = "siloed"
recipe = "siloed"
factors = 8
epochs = 3
"""


def test_lab_run_and_sweep(tmp_path):
    o = reelkit.lab.run(SPEC, out=tmp_path / "run")
    assert o.summary["name"] == "tiny" and o.estimates.height > 0
    assert {"true_rel", "estimate_rel", "covered"} <= set(o.estimates.columns)
    assert (tmp_path / "run" / "report.html").exists() and "<" in o._repr_html_()
    again = reelkit.lab.run(SPEC)
    assert again.summary["estimates"] == o.summary["estimates"], "seeded: the same run"
    s = reelkit.lab.sweep(SPEC, "world.surface_taste_divergence", [0, 1])
    assert set(s["value"].to_list()) == {"0", "1"} or set(map(str, s["value"].to_list())) == {"0", "1"}
    with pytest.raises(ValueError, match="epochs"):
        reelkit.lab.run(SPEC.replace("epochs = 3", "epochs = -3"))
