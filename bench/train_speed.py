"""iALS training speed: reelkit vs implicit ALS, same data, same factors and epochs.

    bench/.venv/bin/python bench/train_speed.py [--epochs 15] [--repeat 3]

Data: a seeded Zipf set of 100,000 users x 20,000 items x ~2.6M interactions.
implicit uses its own threads on both cores with BLAS limited to one thread (as
it recommends); reelkit runs with --threads 2. Per-epoch seconds: implicit's fit
time / epochs; reelkit's mean of its per-epoch timings (load excluded). Also
times batch top-100 recommendation for 10,000 users. With --repeat N, both
libraries train N times, alternating, and the speed-up is the ratio of the
median epoch times (every repetition is kept in the JSON): on a shared machine
one pair of runs can be off by a third either way. Results go to stdout and
bench/data/train_speed.json.
"""
import argparse
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from common import DATA, dump, machine, run_reelkit

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=15)
p.add_argument("--factors", type=int, nargs="+", default=[64, 128])
p.add_argument("--repeat", type=int, default=1)
args = p.parse_args()

N_USERS, N_ITEMS, NNZ = 100_000, 20_000, 2_600_000
rng = np.random.default_rng(7)
act = 1.0 / np.arange(1, N_USERS + 1) ** 0.7
act /= act.sum()
pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.9
pop /= pop.sum()
draw = int(NNZ * 1.25)
u = rng.choice(N_USERS, size=draw, p=act)
i = rng.choice(N_ITEMS, size=draw, p=pop)
pairs = np.unique(u.astype(np.int64) * N_ITEMS + i)
pairs = rng.permutation(pairs)[:NNZ]
users, items = pairs // N_ITEMS, pairs % N_ITEMS
os.makedirs(DATA, exist_ok=True)
path = os.path.join(DATA, "zipf_100k_20k.parquet")
pq.write_table(pa.table({"user_id": users.astype(np.uint64), "item_id": items.astype(np.uint64)}), path)
m = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(N_USERS, N_ITEMS))
print(f"{m.nnz} interactions", flush=True)

from implicit.cpu.als import AlternatingLeastSquares

results = {"machine": machine(), "users": N_USERS, "items": N_ITEMS, "nnz": int(m.nnz), "epochs": args.epochs, "runs": []}
import json

for f in args.factors:
    implicit_reps, reelkit_reps = [], []
    for _ in range(args.repeat):
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(factors=f, iterations=args.epochs, regularization=0.01, alpha=1.0,
                                            use_cg=True, num_threads=2, random_state=1)
            t = time.perf_counter()
            model.fit(m, show_progress=False)
            implicit_reps.append((time.perf_counter() - t) / args.epochs)
            t = time.perf_counter()
            model.recommend(np.arange(10_000), m[:10_000], N=100, filter_already_liked_items=True)
            implicit_rec = time.perf_counter() - t
        out, wall = run_reelkit(["--threads", "2", "train", "--interactions", path, "--factors", str(f),
                                 "--epochs", str(args.epochs), "--reg", "0.01", "--alpha", "1",
                                 "--out", os.path.join(DATA, f"speed_{f}.arrow")])
        rep = json.loads(out)
        reelkit_reps.append(float(np.mean([e["seconds"] for e in rep["epochs"]])))
    implicit_s, reelkit_s = float(np.median(implicit_reps)), float(np.median(reelkit_reps))
    row = {"factors": f, "implicit_s_per_epoch": implicit_s, "reelkit_s_per_epoch": reelkit_s,
           "speedup": implicit_s / reelkit_s, "implicit_reps": implicit_reps, "reelkit_reps": reelkit_reps,
           "speedup_per_rep": [a / b for a, b in zip(implicit_reps, reelkit_reps)],
           "implicit_recommend_10k_top100_s": implicit_rec}
    # Batch recommendation: 10,000 users, k = 100, training items excluded.
    users_file = os.path.join(DATA, "users_10k.csv")
    with open(users_file, "w") as fh:
        fh.write("user_id\n" + "\n".join(str(x) for x in range(10_000)) + "\n")
    out, _ = run_reelkit(["--threads", "2", "bench", "recommend", "--model", os.path.join(DATA, f"speed_{f}.arrow"),
                          "--users", users_file, "--exclude", path, "--k", "100"])
    row["reelkit_recommend_10k_top100_s"] = json.loads(out)["seconds"]
    row["recommend_speedup"] = implicit_rec / row["reelkit_recommend_10k_top100_s"]
    results["runs"].append(row)
    print(row, flush=True)
dump("train_speed.json", results)
