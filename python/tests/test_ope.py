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


def test_bad_logs_and_settings_are_named(explored, root):
    d, model = explored
    with pytest.raises(ValueError, match="propensity"):
        reelkit.ope.evaluate(str(root / "datasets" / "sample" / "events.parquet"), model)
    with pytest.raises(ValueError, match="ipw"):
        reelkit.ope.evaluate(str(d / "log" / "events.parquet"), model, estimators=["ipw"])
    with pytest.raises(ValueError, match="watch_time"):
        reelkit.ope.evaluate(str(d / "log" / "events.parquet"), model, metrics="watch_time")
