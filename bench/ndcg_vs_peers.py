"""NDCG@10 of `reelkit tune` + `recommend` against a tuned implicit ALS and
closed-form EASE (Steck 2019), on the same seeded per-user 80/20 split, full
ranking, training items excluded.

    bench/.venv/bin/python bench/ndcg_vs_peers.py [--data synthetic|longtail|sim|FILE.csv] [--tune "ARGS"]
    bench/.venv/bin/python bench/ndcg_vs_peers.py --data lastfm|bookcrossing|bx100k   # real sets, issue 31

Real sets (bench/real_sets.py has their sources): the split is on the cleaned rows
(per-user 80/20, seeded); reelkit reads its training part written back in the
set's own raw format (Last.fm's tab-separated file with its `//` header,
Book-Crossing's `\r`-ended CSV with tripled quotes), as a user would hand it
the export; the peers (implicit ALS and BPR, EASE and RP3beta in numpy) are
tuned on a validation split of the training part, with the interaction
weights as binary or log-scaled confidences, whichever validates better.

FILE.csv: any `user_id,item_id[,...]` ratings file (every rating a positive),
e.g. MovieLens 100K converted to CSV. `synthetic` is a ML-100K-shaped set
(943 users x 1,682 items x ~100,000 interactions) with Zipf popularity and a
low-rank taste; `longtail` has the other shape of public rating sets (MovieLens
latest-small's 610 users x 9,724 items x ~100,836 interactions): few users,
many items, most of them in a Zipf tail with a handful of interactions; `sim` is the committed simulator sample, positives = pairs
watched about half or engaged with (reelkit's default event weighting).

Each peer is tuned on a validation split carved from the training part only
(another seeded per-user 80/20), then refitted on the whole training part.
NDCG is computed by common.ndcg_at_k, independent of reelkit's own metrics.
"""
import argparse
import os

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from common import DATA, csr, dump, machine, ndcg_at_k, per_user_split, run_reelkit, top_k_scores, write_csv, zipf_interactions

p = argparse.ArgumentParser()
p.add_argument("--data", default="synthetic")
p.add_argument("--seed", type=int, default=42)
p.add_argument("--tune", default="", help="extra arguments of `reelkit tune`")
p.add_argument("--skip-peers", action="store_true", help="reuse the peers' figures of the last run")
p.add_argument("--dev", action="store_true", help="real sets: judge reelkit on the validation part, never the test part")
args = p.parse_args()

if args.data in ("lastfm", "bookcrossing", "bx100k"):
    import real
    real.main(args)
    raise SystemExit(0)

if args.data == "synthetic":
    users, items = zipf_interactions(943, 1682, 100_000, seed=args.seed)
elif args.data == "longtail":
    users, items = zipf_interactions(610, 9724, 100_836, seed=args.seed, exponent=1.1)
elif args.data == "sim":
    import pyarrow.parquet as pq
    t = pq.read_table(os.path.join(os.path.dirname(DATA), "..", "datasets", "sample", "events.parquet")).to_pandas()
    frac = np.minimum(t.watch_ms / t.duration_ms.clip(lower=1), 2.0)
    w = (frac + 0.5 * (t.watch_ms >= t.duration_ms) + 2 * t.liked + 3 * t.shared + 2 * t.commented
         + 3 * t.followed - 1.0 * (t.watch_ms < np.minimum(3000, t.duration_ms)))
    t = t.assign(w=w).groupby(["user_id", "video_id"], as_index=False).w.sum()
    t = t[t.w > 0.5]
    uu, users = np.unique(t.user_id.to_numpy(), return_inverse=True)
    ii, items = np.unique(t.video_id.to_numpy(), return_inverse=True)
else:
    import pandas as pd
    t = pd.read_csv(args.data)
    uu, users = np.unique(t.iloc[:, 0].to_numpy(), return_inverse=True)
    ii, items = np.unique(t.iloc[:, 1].to_numpy(), return_inverse=True)
users = users.astype(np.int64)
items = items.astype(np.int64)
n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
(tr_u, tr_i), (te_u, te_i) = per_user_split(users, items, 0.2, args.seed)
(va_tr_u, va_tr_i), (va_u, va_i) = per_user_split(tr_u, tr_i, 0.2, args.seed + 1)
train, test = csr(tr_u, tr_i, n_users, n_items), csr(te_u, te_i, n_users, n_items)
vtrain, vtest = csr(va_tr_u, va_tr_i, n_users, n_items), csr(va_u, va_i, n_users, n_items)
print(f"{args.data}: {n_users} users, {n_items} items, {len(users)} interactions; train {train.nnz}, test {test.nnz}", flush=True)


def ease_scores(x, lam):
    g = (x.T @ x).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return x @ b


import json
last = os.path.join(DATA, f"ndcg_{os.path.basename(args.data)}.json")
if args.skip_peers and os.path.exists(last):
    prev = json.load(open(last))
    ease, best_lam = prev["ndcg@10"]["ease"], prev["ease_lambda"]
    imp, best_cfg = prev["ndcg@10"]["implicit_als_tuned"], tuple(prev["implicit_best"])
    print(f"peers from {last}: EASE {ease:.4f}, implicit {imp:.4f}", flush=True)
with threadpool_limits(limits=2):
  if not args.skip_peers:
    best_lam, best = None, -1
    for lam in [10, 25, 50, 100, 200, 400, 800, 1600, 3200]:
        s = ndcg_at_k(top_k_scores(np.asarray(ease_scores(vtrain, lam)), vtrain, 10), vtest)
        if s > best:
            best_lam, best = lam, s
    ease = ndcg_at_k(top_k_scores(np.asarray(ease_scores(train, best_lam)), train, 10), test)
print(f"EASE lambda={best_lam}: {ease:.4f}", flush=True)

from implicit.cpu.als import AlternatingLeastSquares


def implicit_scores(x, f, reg, alpha, it):
    with threadpool_limits(limits=1, user_api="blas"):
        m = AlternatingLeastSquares(factors=f, regularization=reg, alpha=alpha, iterations=it, random_state=1, num_threads=2)
        m.fit(x, show_progress=False)
    return np.asarray(m.user_factors) @ np.asarray(m.item_factors).T


if not args.skip_peers:
    best_cfg, best = None, -1
    for f in [32, 64, 128]:
        for reg in [0.01, 0.1, 1.0, 10.0, 100.0]:
            for alpha in [0.25, 1.0, 4.0, 16.0, 64.0]:
                for it in [10, 20]:
                    s = ndcg_at_k(top_k_scores(implicit_scores(vtrain, f, reg, alpha, it), vtrain, 10), vtest)
                    if s > best:
                        best_cfg, best = (f, reg, alpha, it), s
    imp = ndcg_at_k(top_k_scores(implicit_scores(train, *best_cfg), train, 10), test)
print(f"implicit ALS {best_cfg}: {imp:.4f}", flush=True)

tag = os.path.join(DATA, f"peers_{os.path.basename(args.data)}")
write_csv(tag + "_train.csv", tr_u, tr_i)
run_reelkit(["--threads", "2", "tune", "--interactions", tag + "_train.csv", "--out", tag + ".arrow",
             "--report", tag + "_tune.csv", "--seed", str(args.seed)] + args.tune.split())
run_reelkit(["--threads", "2", "recommend", "--model", tag + ".arrow", "--k", "10", "--exclude", tag + "_train.csv",
             "--out", tag + "_recs.csv"])
recs = {}
with open(tag + "_recs.csv") as fh:
    next(fh)
    for line in fh:
        u, i, _, _ = line.split(",")
        recs.setdefault(int(u), []).append(int(i))
rk = ndcg_at_k(recs, test)
print(f"reelkit tune: {rk:.4f}", flush=True)
dump(f"ndcg_{os.path.basename(args.data)}.json", {
    "machine": machine(), "data": args.data, "users": n_users, "items": n_items, "interactions": int(len(users)),
    "ndcg@10": {"reelkit_tune": rk, "implicit_als_tuned": imp, "ease": ease},
    "implicit_best": best_cfg, "ease_lambda": best_lam, "tune_args": args.tune,
})
