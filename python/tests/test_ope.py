"""Off-policy evaluation from Python: the same report as ``reelkit ope``."""
import json

import pytest

import reelkit
from conftest import run


@pytest.fixture(scope="module")
def explored(tmp_path_factory, cli):
    """A model and the log it wrote while exploring 20% of slots."""
    d = tmp_path_factory.mktemp("ope")
    world = ["--users", "300", "--videos", "1500", "--seed", "9"]
    run(cli, "simulate", *world, "--days", "3", "--out", str(d / "pre"))
    model = reelkit.train(events=str(d / "pre" / "events.parquet"), factors=8, epochs=5)
    model.save(d / "m.arrow")
    run(cli, "simulate", *world, "--days", "1", "--policy", "ranker", "--model", str(d / "m.arrow"),
        "--fresh", "0", "--explore", "0.2", "--out", str(d / "log"))
    return d, model


def test_the_report_is_the_clis(explored, cli):
    d, model = explored
    log, videos = d / "log" / "events.parquet", d / "log" / "videos.parquet"
    rep = reelkit.ope.evaluate(str(log), model, videos=str(videos), bootstrap=50)
    run(cli, "ope", "--events", str(log), "--model", str(d / "m.arrow"), "--videos", str(videos),
        "--bootstrap", "50", "--out", str(d / "out"))
    want = json.loads((d / "out" / "report.json").read_text())
    assert rep.data["metrics"] == want["metrics"]
    assert rep.data["pages"] == want["pages"]
    # The model explored 20% of slots: it agrees with about 80% of them.
    assert 0.75 < rep.agreement < 0.85
    f = rep.to_frame()
    assert set(f["estimator"].to_list()) == {"ips", "snips", "dr", "dm", "pdis"}
    assert set(f["metric"].to_list()) == {"watch_ms", "liked"}
    assert "<svg" in rep._repr_html_()
    assert rep.impressions is None


def test_impressions_are_what_the_estimates_sum(explored):
    d, model = explored
    log, videos = d / "log" / "events.parquet", d / "log" / "videos.parquet"
    rep = reelkit.ope.evaluate(str(log), model, videos=str(videos), bootstrap=0, metrics="watch_ms",
                               estimators=["ips", "dr"], impressions=True)
    rows = rep.impressions
    def column(c):  # a polars frame, or a pyarrow table without polars
        v = rows[c]
        return v.to_list() if hasattr(v, "to_list") else v.to_pylist()

    cols = {c: column(c) for c in ("user_id", "weight", "target", "propensity", "watch_ms", "watch_ms_q_logged",
                                   "watch_ms_q_candidate")}
    n = len(cols["weight"])
    assert n == rep.data["metrics"][0]["diagnostics"]["impressions"]
    users = len(set(cols["user_id"]))
    assert all(abs(w - t / p) < 1e-12 for w, t, p in zip(cols["weight"], cols["target"], cols["propensity"]))
    ips = sum(w * r for w, r in zip(cols["weight"], cols["watch_ms"])) / users
    dr = sum(qc + w * (r - ql) for w, r, ql, qc in zip(cols["weight"], cols["watch_ms"], cols["watch_ms_q_logged"],
                                                       cols["watch_ms_q_candidate"])) / users
    got = {e["estimator"]: e["value"] for e in rep.data["metrics"][0]["estimates"]}
    assert got["ips"] == pytest.approx(ips, rel=1e-9)
    assert got["dr"] == pytest.approx(dr, rel=1e-9)


def test_bad_logs_and_settings_are_named(explored, root):
    d, model = explored
    with pytest.raises(ValueError, match="propensity"):
        reelkit.ope.evaluate(str(root / "datasets" / "sample" / "events.parquet"), model)
    with pytest.raises(ValueError, match="ipw"):
        reelkit.ope.evaluate(str(d / "log" / "events.parquet"), model, estimators=["ipw"])
    with pytest.raises(ValueError, match="watch_time"):
        reelkit.ope.evaluate(str(d / "log" / "events.parquet"), model, metrics="watch_time")


STUDY = """name = "ope-py"
seed = 7
[world]
users = 300
videos = 1500
creators = 150
new_videos_per_day = 20
[pre_period]
days = 3
[experiment]
days = 3
control = "popular"
[[arms]]
name = "popular"
recipe = "popular"
[[arms]]
name = "unified"
recipe = "unified"
retrain = "never"
factors = 8
epochs = 4
[[arms]]
name = "random"
recipe = "random"
"""


def test_a_study_is_the_clis(tmp_path, cli):
    spec = tmp_path / "ope.toml"
    spec.write_text(STUDY)
    s = reelkit.ope.study(str(spec), candidates=["unified", "random"], unit="user", runs=2, bootstrap=40)
    run(cli, "experiment", "ope", str(spec), "--candidates", "unified,random", "--unit", "user", "--runs", "2",
        "--bootstrap", "40", "--out", str(tmp_path / "cli"))
    want = json.loads((tmp_path / "cli" / "ope_study.json").read_text())
    assert s.data == want
    # A coin per user adds the CUPED-adjusted estimate; every estimate sits
    # beside the same truth as the other estimators of its run and candidate.
    t = s.trials
    assert set(t["estimator"].to_list()) == {"ips", "snips", "ips-cuped"}
    assert t.height == 3 * 2 * 2
    assert set(s.rates["candidate"].to_list()) == {"unified", "random", "all"}
    assert "<svg" in s._repr_html_()
    with pytest.raises(ValueError, match="page, session, day or user"):
        reelkit.ope.study(str(spec), unit="week", runs=1)
    with pytest.raises(Exception, match="arms.unified.retrain"):
        reelkit.ope.study(str(spec), set={"arms.unified.retrain": "daily"}, runs=1)
