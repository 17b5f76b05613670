"""Simulate → train → recommend → scores, the model file and its factors."""
import json
import os
import threading
import time

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import reelkit
from conftest import run


def ratings():
    return pl.DataFrame({
        "uid": [1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5],
        "movie": [10, 11, 12, 10, 13, 11, 12, 14, 13, 14, 10, 14],
        "w": [5.0, 3, 4, 2, 5, 4, 4, 1, 3, 5, 2, 4],
    })


def test_simulation_is_seeded_and_complete():
    a = reelkit.simulate(days=2, users=150, videos=300, seed=3)
    b = reelkit.simulate(days=2, users=150, videos=300, seed=3)
    c = reelkit.simulate(days=2, users=150, videos=300, seed=4)
    assert a.events.equals(b.events)
    assert not a.events.equals(c.events)
    assert {"user_id", "video_id", "surface", "watch_ms", "liked"} <= set(a.events.columns)
    assert len(a.users) == 150 and a.params["users"] == 150 and a.params["seed"] == 3
    assert set(a.events["user_id"].to_list()) <= set(a.users["user_id"].to_list())


def test_world_params_and_bad_world():
    p = reelkit.world_params({"users": 500})
    assert p["users"] == 500 and "surface_taste_divergence" in json.dumps(p)
    with pytest.raises(ValueError, match="users"):
        reelkit.world_params({"users": 0})
    with pytest.raises(ValueError, match="no_such_key"):
        reelkit.world_params({"no_such_key": 1})


def test_train_takes_polars_pyarrow_pandas_and_files_alike(tmp_path):
    df = ratings()
    path = tmp_path / "r.csv"
    df.write_csv(path)
    kw = dict(user_col="uid", item_col="movie", weight_col="w", factors=4, epochs=5)
    models = [
        reelkit.train(df, **kw),
        reelkit.train(df.to_arrow(), **kw),
        reelkit.train(df.to_pandas(), **kw),
        reelkit.train(str(path), **kw),
    ]
    ref = models[0].user_factors
    for m in models[1:]:
        np.testing.assert_array_equal(m.user_factors, ref)
        assert m.user_ids == models[0].user_ids


def test_recommendations_equal_the_cli(tmp_path, cli, sim):
    events = tmp_path / "events.parquet"
    sim.events.write_parquet(events)
    model = reelkit.train(events=sim.events, epochs=4, factors=16)
    run(cli, "train", "--events", str(events), "--epochs", "4", "--factors", "16", "--out", str(tmp_path / "m.arrow"))
    cli_model = reelkit.Model.load(tmp_path / "m.arrow")
    np.testing.assert_array_equal(cli_model.item_factors, model.item_factors)
    run(cli, "recommend", "--model", str(tmp_path / "m.arrow"), "--k", "7", "--exclude", str(events),
        "--user-col", "user_id", "--item-col", "video_id", "--out", str(tmp_path / "recs.csv"))
    want = pl.read_csv(tmp_path / "recs.csv")
    got = model.recommend(k=7, exclude=sim.events, item_col="video_id")
    assert got.columns == ["user_id", "item_id", "rank", "score"]
    assert got.select("user_id", "item_id", "rank").to_dicts() == want.select("user_id", "item_id", "rank").to_dicts()
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-5)


def test_factors_are_numpy_views_of_the_model(tmp_path):
    m = reelkit.train(ratings(), user_col="uid", item_col="movie", factors=4, epochs=3)
    a, b = m.user_factors, m.user_factors
    assert a.dtype == np.float32 and a.shape == (m.n_users, m.dim)
    assert not a.flags["OWNDATA"] and not a.flags["WRITEABLE"]
    assert np.shares_memory(a, b), "two reads are one memory: no copy"
    # Scores are the factors' dot products.
    u = m.user_ids.index(1)
    items = m.item_ids
    s = m.score(1, items)
    np.testing.assert_allclose(s, m.item_factors @ a[u], rtol=1e-4, atol=1e-6)
    # The array outlives its model object.
    del m
    assert np.isfinite(a).all()


def test_save_load_and_similar(tmp_path):
    m = reelkit.train(ratings(), user_col="uid", item_col="movie", factors=4, epochs=3)
    m.save(tmp_path / "m.arrow")
    back = reelkit.Model.load(tmp_path / "m.arrow", retrieval="int8")
    assert back.retrieval == "int8"
    np.testing.assert_array_equal(back.item_factors, m.item_factors)
    sim_items = back.similar_items(10, k=2)
    assert sim_items.height == 2 and 10 not in sim_items["item_id"].to_list()
    back.save(tmp_path / "copy.arrow")
    assert (tmp_path / "copy.arrow").read_bytes() == (tmp_path / "m.arrow").read_bytes()
    # A file replaced under a loaded model is not silently copied.
    m2 = reelkit.train(ratings(), user_col="uid", item_col="movie", factors=4, epochs=3, seed=9)
    m2.save(tmp_path / "m.arrow")
    with pytest.raises(ValueError, match="changed since"):
        back.save(tmp_path / "copy2.arrow")


def test_string_ids_round_trip(tmp_path):
    df = pl.DataFrame({"user": ["ann", "ann", "bo", "bo", "cy"], "isbn": ["034545104X", "0155061224", "034545104X", "0446520802", "0155061224"]})
    m = reelkit.train(df, user_col="user", item_col="isbn", factors=4, epochs=3)
    assert sorted(m.user_ids) == ["ann", "bo", "cy"]
    r = m.recommend(["ann", "nobody"], k=2)
    assert r["user_id"].to_list()[:2] == ["ann", "ann"] and "nobody" in r["user_id"].to_list()
    assert all(isinstance(x, str) for x in r["item_id"].to_list())
    m.save(tmp_path / "s.arrow")
    assert reelkit.Model.load(tmp_path / "s.arrow").item_ids == m.item_ids


def test_unknown_users_and_items():
    m = reelkit.train(ratings(), user_col="uid", item_col="movie", factors=4, epochs=3)
    r = m.recommend([999], k=3)
    assert r.height == 3, "the popular fallback answers an unknown user"
    with pytest.raises(KeyError, match="999"):
        m.score(999, [10])
    assert np.isnan(m.score(1, [10, 12345])[1])
    with pytest.raises(KeyError):
        m.similar_items(12345)
    with pytest.raises(ValueError, match="not a number"):
        m.recommend(["ann"])


def test_bad_input_is_a_clear_python_exception(tmp_path):
    df = ratings()
    with pytest.raises(ValueError, match=r"missing column `user_id`.*the `interactions` frame|the `interactions` frame.*missing column `user_id`"):
        reelkit.train(df)
    with pytest.raises(ValueError, match="NaN|finite"):
        reelkit.train(df.with_columns(pl.lit(float("nan")).alias("w")), user_col="uid", item_col="movie", weight_col="w")
    with pytest.raises(ValueError, match="uid"):
        reelkit.train(df.with_columns(pl.col("uid").cast(pl.Float64) + 0.5), user_col="uid", item_col="movie")
    with pytest.raises(OSError, match="nope.csv"):
        reelkit.train(str(tmp_path / "nope.csv"))
    with pytest.raises(TypeError, match="not a frame"):
        reelkit.train([1, 2, 3])
    with pytest.raises(ValueError, match="algo|ials"):
        reelkit.train(df, user_col="uid", item_col="movie", algo="magic")
    with pytest.raises(OSError, match="missing.arrow"):
        reelkit.Model.load(tmp_path / "missing.arrow")
    (tmp_path / "junk.arrow").write_bytes(b"ARROW1" + b"\0" * 50)
    with pytest.raises(ValueError, match="not a reelkit model file"):
        reelkit.Model.load(tmp_path / "junk.arrow")
    with pytest.raises(ValueError, match="exactly one"):
        reelkit.train()


def test_tune_chooses_and_trains():
    data = ratings().vstack(ratings().with_columns(pl.col("uid") + 10))
    t = reelkit.tune(data, user_col="uid", item_col="movie", weight_col="w", budget=3)
    assert t.chosen["ndcg"] >= 0 and t.chosen["settings_tried"] == t.trials.height
    assert 0 < t.chosen["judged_users"] <= 10_000
    assert t.model.n_users == 10
    # The budget counts modeled work: the same call tries the same settings
    # with the same figures (only the wall seconds differ).
    again = reelkit.tune(data, user_col="uid", item_col="movie", weight_col="w", budget=3)
    assert again.trials.drop("seconds").equals(t.trials.drop("seconds"))
    assert (t.trials["work"] >= 0).all()
    with pytest.raises(ValueError, match="a year"):
        reelkit.tune(data, user_col="uid", item_col="movie", weight_col="w", budget=1e20)


def test_from_factors_ranks_by_dot_products(tmp_path):
    u = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    v = np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.6]], dtype=np.float64)
    m = reelkit.Model.from_factors([7, 8], u, ["a", "b", "c"], v)
    r = m.recommend([7, 8], k=3)
    assert r.filter(pl.col("user_id") == 7)["item_id"].to_list() == ["a", "c", "b"]
    assert r.filter(pl.col("user_id") == 8)["item_id"].to_list() == ["b", "c", "a"]
    with pytest.raises(ValueError, match="one dimension"):
        reelkit.Model.from_factors([7, 8], u, ["a"], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="distinct"):
        reelkit.Model.from_factors([7, 7], u, ["a", "b", "c"], v)
    # Spark MLlib ALS's saved layout.
    import pyarrow.parquet as pq
    d = tmp_path / "userFactors"
    d.mkdir()
    pq.write_table(pa.table({"id": pa.array([7, 8], pa.int32()), "features": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32()))}), d / "part-00000.parquet")
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int32()), "features": pa.array(v.tolist(), pa.list_(pa.float32()))}), tmp_path / "items.parquet")
    imp = reelkit.Model.import_factors(d, tmp_path / "items.parquet")
    assert imp.recommend([8], k=3)["item_id"].to_list() == [2, 3, 1]


def test_ctrl_c_interrupts_training_and_the_gil_is_released():
    import _thread
    import signal
    # A process started in the background (as CI's script may be) inherits
    # SIGINT ignored, and then Python has no handler to raise with: install
    # the default one for the test, as an interactive session has it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    big = reelkit.simulate(days=3, users=1500, videos=3000, seed=5)
    ticks = 0
    done = threading.Event()

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    timer = threading.Timer(0.5, _thread.interrupt_main)
    start = time.perf_counter()
    timer.start()
    try:
        # Bounded: if Ctrl-C were not heard, this ends (and the test fails)
        # instead of hanging the suite.
        with pytest.raises(KeyboardInterrupt):
            reelkit.train(events=big.events, factors=128, epochs=400)
    finally:
        done.set()
        t.join()
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.perf_counter() - start < 10
    assert ticks > 100, "other Python threads ran while training"


def test_help_and_stubs_document_the_api():
    import inspect
    from pathlib import Path
    for f in (reelkit.train, reelkit.tune, reelkit.simulate, reelkit.ab.analyze, reelkit.lab.run,
              reelkit.Model.recommend, reelkit.Model.from_factors):
        assert inspect.getdoc(f), f
    stub = Path(reelkit.__file__).parent / "_reelkit.pyi"
    text = stub.read_text()
    native = [n for n in dir(reelkit._reelkit) if not n.startswith("_")]
    missing = [n for n in native if f"def {n}(" not in text and f"class {n}" not in text]
    assert not missing, f"the stub lacks {missing}"
    assert (Path(reelkit.__file__).parent / "py.typed").exists()


def test_per_surface_training_ranks_each_surface_with_its_own_vectors(root):
    events = str(root / "datasets" / "sample" / "events.parquet")
    m = reelkit.train(events=events, per_surface=True, factors=8, epochs=3, specific="0.5",
                      item_specific="reels=0,feed=0,watch=1")
    assert m.surfaces == ["reels", "feed", "watch"]
    # Watch's videos have vectors of its own: one block more in every row.
    assert m.dim == 16
    meta = m.meta
    assert meta["item_specific"] == [0.0, 0.0, 1.0] and meta["specific"] == [0.5, 0.5, 0.5]
    user = m.user_ids[0]
    watch = m.recommend(users=[user], k=5, surface="watch")
    reels = m.recommend(users=[user], k=5, surface="reels")
    assert len(watch) == 5 and len(reels) == 5
    assert list(watch["item_id"]) != list(reels["item_id"])
    with pytest.raises(ValueError, match="per_surface needs events"):
        reelkit.train(ratings(), user_col="uid", item_col="movie", per_surface=True)
    with pytest.raises(ValueError, match="item_specific"):
        reelkit.train(events=events, per_surface=True, item_specific="watch=2")
