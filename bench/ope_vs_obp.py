"""reelkit ope's IPS, SNIPS and DR against Open Bandit Pipeline's (issue 35).

    python3 -m venv /tmp/obpvenv && /tmp/obpvenv/bin/pip install --no-deps --ignore-requires-python obp==0.5.7 \
        && /tmp/obpvenv/bin/pip install numpy scipy scikit-learn pandas matplotlib seaborn tqdm pyyaml pyarrow torch
    cargo build --release
    /tmp/obpvenv/bin/python bench/ope_vs_obp.py [--explore-top 100] [--candidate-factors 16]

An exploring log is simulated (the sample world, 3 days, the sample-trained
model logging with ε = 0.1), a candidate replayed on it by `reelkit ope
--impressions`, and the rows every reelkit estimate sums over are exported to
obp's bandit-feedback format: one round per impression, `len_list` 1, two
actions per round (0: the logged video, 1: the candidate's video when it is
another), `pscore` the log's propensity, `action_dist` the candidate's
probability of each (1 on its choice), `estimated_rewards_by_reg_model` the
cross-fitted reward model's predictions of each. obp's `estimate_policy_value`
is then the reward per impression, which reelkit reports as `per_impression`
beside its per-user value. A numpy implementation of the textbook formulas is
checked too, and stands in (the script says so) when obp cannot be imported:
obp 0.5.7 declares Python < 3.11 and pins old numpy, Pillow and torch, so on
Python 3.11 it installs only with --no-deps --ignore-requires-python.

Exit status 1 when any estimate differs by more than 1e-9 (relative).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REELKIT = os.path.join(ROOT, "target", "release", "reelkit")
SAMPLE = os.path.join(ROOT, "datasets", "sample")
TOL = 1e-9


def run(*args):
    subprocess.run([REELKIT, *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def textbook(r, w, q_logged, q_cand):
    """Reward per impression of the candidate: IPS mean(w r), SNIPS
    Σ w r / Σ w, DR mean(q̂_π + w (r − q̂))."""
    return {
        "ips": float(np.mean(w * r)),
        "snips": float(np.sum(w * r) / np.sum(w)),
        "dr": float(np.mean(q_cand + w * (r - q_logged))),
    }


def with_obp(r, target, pscore, q_logged, q_cand):
    from obp.ope import DoublyRobust, InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting

    n = len(r)
    action = np.zeros(n, dtype=int)
    position = np.zeros(n, dtype=int)
    dist = np.zeros((n, 2, 1))
    dist[:, 0, 0] = target
    dist[:, 1, 0] = 1.0 - target
    q = np.zeros((n, 2, 1))
    q[:, 0, 0] = q_logged
    q[:, 1, 0] = q_cand
    common = dict(reward=r, action=action, position=position, pscore=pscore, action_dist=dist)
    return {
        "ips": float(InverseProbabilityWeighting().estimate_policy_value(**common)),
        "snips": float(SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**common)),
        "dr": float(DoublyRobust().estimate_policy_value(**common, estimated_rewards_by_reg_model=q)),
    }


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--explore", type=float, default=0.1)
    p.add_argument("--explore-top", type=int, default=100)
    p.add_argument("--candidate-factors", type=int, default=16)
    p.add_argument("--work", default=None, help="working directory (default: a temporary one)")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="ope_vs_obp_")
    os.makedirs(work, exist_ok=True)
    j = lambda *x: os.path.join(work, *x)
    run("train", "--events", os.path.join(SAMPLE, "events.parquet"), "--out", j("logger.arrow"))
    run("train", "--events", os.path.join(SAMPLE, "events.parquet"), "--factors", args.candidate_factors,
        "--out", j("candidate.arrow"))
    run("simulate", "--config", os.path.join(SAMPLE, "world.toml"), "--days", 3, "--policy", "ranker",
        "--model", j("logger.arrow"), "--fresh", 0, "--explore", args.explore, "--explore-top", args.explore_top,
        "--out", j("log"))
    run("ope", "--events", j("log", "events.parquet"), "--model", j("candidate.arrow"), "--videos",
        j("log", "videos.parquet"), "--metric", "watch_ms,liked", "--estimator", "ips,snips,dr",
        "--bootstrap", 0, "--impressions", "--out", j("rep"))
    rows = pq.read_table(j("rep", "impressions.parquet")).to_pandas()
    report = json.load(open(j("rep", "report.json")))
    try:
        import obp
        peer = f"obp {obp.__version__}"
    except ImportError:
        peer = None
        print("obp cannot be imported here: the numpy textbook formulas stand in", flush=True)
    worst = 0.0
    out = {"rows": len(rows), "users": int(rows.user_id.nunique()), "peer": peer or "numpy textbook", "metrics": {}}
    for m in report["metrics"]:
        metric = m["metric"]
        r = rows[metric].to_numpy(float)
        target, pscore = rows.target.to_numpy(float), rows.propensity.to_numpy(float)
        w = target / pscore
        ql, qc = rows[f"{metric}_q_logged"].to_numpy(float), rows[f"{metric}_q_candidate"].to_numpy(float)
        ours = {e["estimator"]: e["per_impression"] for e in m["estimates"]}
        # reelkit's per-user value is the same sum over the users: per impression x impressions per user.
        per_user = {e["estimator"]: e["value"] for e in m["estimates"]}
        n_users = rows.user_id.nunique()
        for e, v in per_user.items():
            d = rel(v, ours[e] * len(rows) / n_users)
            worst = max(worst, d)
            print(f"{metric:>8} {e:>5}: per-user value {v:.12g} = per impression x {len(rows) / n_users:.2f} "
                  f"(rel diff {d:.1e})", flush=True)
        book = textbook(r, w, ql, qc)
        theirs = with_obp(r, target, pscore, ql, qc) if peer else book
        res = {}
        for e in ("ips", "snips", "dr"):
            d = max(rel(ours[e], theirs[e]), rel(ours[e], book[e]))
            worst = max(worst, d)
            res[e] = {"reelkit": ours[e], "peer": theirs[e], "textbook": book[e], "rel_diff": d}
            print(f"{metric:>8} {e:>5}: reelkit {ours[e]:.12g}  {out['peer']} {theirs[e]:.12g}  "
                  f"textbook {book[e]:.12g}  rel diff {d:.1e}", flush=True)
        out["metrics"][metric] = res
    out["worst_rel_diff"] = worst
    out["agreement"] = report["agreement"]
    print(json.dumps({"worst_rel_diff": worst, "rows": out["rows"], "users": out["users"], "peer": out["peer"]}))
    sys.exit(0 if worst <= TOL else 1)


if __name__ == "__main__":
    main()
