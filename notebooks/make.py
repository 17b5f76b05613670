"""Writes the three notebooks (run: python notebooks/make.py). They are
executed by python/test.sh in CI and, with their outputs, into
notebooks-output/ by `python notebooks/make.py --execute`."""
import subprocess
import sys
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent


def nb(cells):
    n = nbf.v4.new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.cells = [nbf.v4.new_markdown_cell(c[3:]) if c.startswith("md:") else nbf.v4.new_code_cell(c.strip()) for c in cells]
    return n


ROOT_CELL = """
import os, pathlib
# Run from the repository (the notebooks read the committed sample and specs).
while not pathlib.Path("datasets").is_dir() and pathlib.Path.cwd() != pathlib.Path("/"):
    os.chdir("..")
import reelkit, polars as pl, numpy as np
reelkit.__version__
"""

one = nb([
    "md:# Simulate, train, recommend\n\nA short-video world with counterfactual truth, a ranker trained on its engagement log, and the recommendations the server would give — from Python, through the same Rust code as the `reelkit` command line.",
    ROOT_CELL,
    "md:## Simulate a week of the feed under a popularity policy",
    "sim = reelkit.simulate(days=4, users=1000, videos=3000, seed=42)\nsim",
    "sim.events.head()",
    "sim.events.group_by('surface').agg(pl.len().alias('impressions'), (pl.col('watch_ms').mean() / 1000).alias('watch_s'))",
    "md:## Train the ranker on the engagement log\n\nImpressions are weighted by watch time and engagement; the value model (per-surface heads) is fitted too.",
    "model = reelkit.train(events=sim.events, factors=32, epochs=8)\nmodel",
    "md:## Recommend, excluding what each user has already seen",
    "users = sim.events['user_id'].unique().sort().head(3).to_list()\nrecs = model.recommend(users, k=5, exclude=sim.events, item_col='video_id')\nrecs",
    "md:## The same scores the server answers `/v1/score` with\n\n`Model.score` is the ranker's own scoring: a user's recommended list, scored item by item, gives back the list's scores.",
    "u = users[0]\nmine = recs.filter(pl.col('user_id') == u)\nserved = model.score(u, mine['item_id'].to_list())\nassert np.allclose(served, mine['score'].to_numpy(), rtol=1e-5)\npl.DataFrame({'item_id': mine['item_id'], 'recommend': mine['score'], 'score': served})",
    "md:## The factors are numpy arrays over the model's memory (no copy)",
    "uf = model.user_factors\nprint(uf.shape, uf.dtype, 'owns its data:', uf.flags['OWNDATA'], '| shares memory with a second read:', np.shares_memory(uf, model.user_factors))",
    "model.similar_items(recs['item_id'][0], k=5)",
    "md:## Save, load, serve the same file",
    "model.save('/tmp/reelkit-notebook-model.arrow')\nback = reelkit.Model.load('/tmp/reelkit-notebook-model.arrow', retrieval='int8')\nassert back.recommend(users, k=5, exclude=sim.events, item_col='video_id')['item_id'].to_list() == recs['item_id'].to_list()\nback",
])

two = nb([
    "md:# Unified vs siloed: the demo experiment with its ground truth\n\nThe spec `datasets/experiments/demo.toml`: a pre-period on `popular`, then a week with three arms — `popular` (control), `siloed` (one ranker per surface) and `unified` (one ranker over every surface) — retrained daily. The simulator also plays every user under every arm, so each estimate sits beside the true lift.",
    ROOT_CELL,
    "outcome = reelkit.lab.run('datasets/experiments/demo.toml')\noutcome",
    "md:## Estimated lifts beside the true ones",
    "(outcome.estimates\n .filter(pl.col('segment') == 'all')\n .select('variant', 'baseline', 'metric', 'estimate_rel', 'rel_ci_low', 'rel_ci_high', 'true_rel', 'covered')\n .sort('variant', 'metric'))",
    "md:## Per surface: where unifying pays",
    "(outcome.estimates\n .filter((pl.col('variant') == 'unified') & (pl.col('baseline') == 'siloed') & (pl.col('metric') == 'watch_time_per_user'))\n .select('segment', 'estimate_rel', 'rel_ci_low', 'rel_ci_high', 'true_rel', 'covered'))",
    "md:## The report, as `reelkit demo` writes it",
    "outcome.report",
])

three = nb([
    "md:# An A/B analysis of a frame you bring\n\nThe committed sample (`datasets/sample/events.parquet`, 2,000 users) split into two arms by the server's salted hash; power from the log, then the analysis and its decision. Bring your own frame: any polars, pyarrow or pandas frame with the event-log columns.",
    ROOT_CELL,
    "events = pl.read_parquet('datasets/sample/events.parquet')\nevents.shape",
    "assignments = reelkit.ab.assign(events['user_id'].unique(), arms='control=0.5,treatment=0.5', salt='notebook')\nassignments.group_by('variant').len()",
    "md:## Power: users and days needed for a 2% lift",
    "reelkit.ab.power(events, mde=0.02).select('metric', 'users_needed', 'mde_at_pre_period_users', 'days_needed')",
    "md:## The analysis (an A/A test here: both arms saw the same policy)",
    "report = reelkit.ab.analyze(events, assignments, daily=True)\nreport.decisions",
    "report.to_frame().select('metric', 'variant', 'rel_effect', 'rel_ci_low', 'rel_ci_high', 'p_value_adjusted', 'significant')",
    "report",
    "md:## The same sums in a warehouse",
    "print(reelkit.ab.sql(dialect='spark', events_table='prod.events', assignments_table='prod.assignments')[:600])",
])

for name, n in [("1-simulate-train-recommend", one), ("2-unified-vs-siloed", two), ("3-ab-analysis", three)]:
    nbf.write(n, HERE / f"{name}.ipynb")

if "--execute" in sys.argv:
    out = HERE.parent / "notebooks-output" / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    for name in ["1-simulate-train-recommend", "2-unified-vs-siloed", "3-ab-analysis"]:
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                        str(HERE / f"{name}.ipynb"), "--output-dir", str(out), "--ExecutePreprocessor.timeout=900"],
                       check=True)
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(out / f"{name}.ipynb"),
                        "--output-dir", str(out)], check=True)
