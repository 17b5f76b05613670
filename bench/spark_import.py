"""Factors trained in Apache Spark, served by reelkit (issue 32): fit MLlib ALS
in local mode on the committed sample's engagement, save the model, import
its userFactors/itemFactors with `reelkit import-factors`, and check that
reelkit's top-10 equals Spark's `recommendForAllUsers(10)` for every user.
Run by hand, never by CI (Java 17 and pyspark from PyPI):

    python3 -m venv bench/.spark && bench/.spark/bin/pip install pyspark numpy polars pyarrow
    cargo build --release
    bench/.spark/bin/python bench/spark_import.py

Spark ranks every item, the user's own included; so does `reelkit recommend`
without --exclude. Ties (equal float scores) may order differently; a user
whose lists differ only by such a tie is counted apart.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
from pyspark.ml.recommendation import ALS
from pyspark.sql import SparkSession

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / "target" / "release" / "reelkit")

spark = (SparkSession.builder.master("local[2]").appName("reelkit-import")
         .config("spark.ui.enabled", "false").getOrCreate())
ev = pl.read_parquet(ROOT / "datasets" / "sample" / "events.parquet")
# Spark's ALS takes int ids: the sample's ids are 53-bit, so index them.
users = ev["user_id"].unique().sort()
videos = ev["video_id"].unique().sort()
umap = dict(zip(users.to_list(), range(len(users))))
vmap = dict(zip(videos.to_list(), range(len(videos))))
pairs = (ev.with_columns((pl.col("watch_ms") / pl.col("duration_ms").clip(1)).clip(0, 2).alias("w"))
         .group_by("user_id", "video_id").agg(pl.col("w").sum()))
rows = [(umap[u], vmap[v], float(w)) for u, v, w in pairs.iter_rows()]
df = spark.createDataFrame(rows, ["user", "item", "rating"])
als = ALS(rank=16, maxIter=8, regParam=0.1, implicitPrefs=True, alpha=1.0, seed=42,
          userCol="user", itemCol="item", ratingCol="rating", coldStartStrategy="drop")
model = als.fit(df)
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    model.save(str(tmp / "als"))
    out = subprocess.run([CLI, "import-factors", "--users", str(tmp / "als" / "userFactors"), "--items",
                          str(tmp / "als" / "itemFactors"), "--out", str(tmp / "m.arrow")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr)
    subprocess.run([CLI, "recommend", "--model", str(tmp / "m.arrow"), "--k", "10", "--retrieval", "exact",
                    "--out", str(tmp / "recs.csv")], check=True, capture_output=True)
    ours = pl.read_csv(tmp / "recs.csv").sort("user_id", "rank")
    theirs = model.recommendForAllUsers(10).collect()
    spark_lists = {r["user"]: [x["item"] for x in r["recommendations"]] for r in theirs}
    spark_scores = {r["user"]: [x["rating"] for x in r["recommendations"]] for r in theirs}
    mine = {u: g["item_id"].to_list() for (u,), g in ours.group_by("user_id")}
    equal = sum(mine.get(u) == l for u, l in spark_lists.items())
    ties = 0
    for u, l in spark_lists.items():
        if mine.get(u) != l and sorted(mine.get(u, [])) == sorted(l):
            s = spark_scores[u]
            if any(abs(a - b) < 1e-6 for a, b in zip(s, s[1:])):
                ties += 1
    print(json.dumps({"users": len(spark_lists), "top10_equal": equal, "differ_only_by_ties": ties,
                      "differ": len(spark_lists) - equal - ties, "factors": 16}, indent=2))
spark.stop()
