"""A synthetic rating export the size and shape of the full Book-Crossing dump
(105,283 users, 340,556 ISBNs drawn, ~1.1 M rows, 62% ratings of 0), written as
the original is: `;`-separated, every field quoted, `\\r\\n` line ends. The real
1.1 M-row file was not reachable from this machine (bench/real_sets.py); this
checks that `reelkit tune` keeps its budget and memory at that size, not its
quality (the tastes are a crude mixture of popularity and 20 clusters).

    bench/.venv/bin/python bench/bx_shape.py [--out bench/data/bx_shape.csv] [--seed 7]
    target/release/reelkit tune --interactions bench/data/bx_shape.csv \\
        --user-col User-ID --item-col ISBN --weight-col Book-Rating --out /tmp/m.arrow
"""
import argparse
import os

import numpy as np

from common import DATA

p = argparse.ArgumentParser()
p.add_argument("--out", default=os.path.join(DATA, "bx_shape.csv"))
p.add_argument("--seed", type=int, default=7)
args = p.parse_args()

rng = np.random.default_rng(args.seed)
n_users, n_items, n_rows = 105_283, 340_556, 1_149_780
activity = rng.pareto(1.2, n_users) + 1
activity = np.maximum(1, activity / activity.sum() * n_rows).astype(int)
users = np.repeat(np.arange(n_users), activity)[:n_rows]
popularity = 1.0 / np.arange(1, n_items + 1) ** 0.85
popularity /= popularity.sum()
clusters = 20
cluster = rng.integers(0, clusters, n_users)
orders = np.stack([rng.permutation(n_items) for _ in range(clusters)])
drawn = rng.choice(n_items, size=len(users), p=popularity)
items = np.where(rng.random(len(users)) < 0.5, orders[cluster[users], drawn], drawn)
ratings = np.where(rng.random(len(users)) < 0.62, 0, rng.integers(1, 11, len(users)))
os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
with open(args.out, "w", newline="") as f:
    f.write('"User-ID";"ISBN";"Book-Rating"\r\n')
    for u, i, r in zip(users, items, ratings):
        f.write(f'"{u + 1}";"{i:010d}";"{r}"\r\n')
print(f"{len(users)} rows -> {args.out}")
