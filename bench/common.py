"""Shared helpers of the peer benchmarks: data generation, splits, metrics.

Metrics are implemented here independently of reelkit (binary relevance,
training items excluded, full catalogue):
  NDCG@k = sum_{hits at rank r} 1/log2(r+2) / sum_{r < min(k,|test|)} 1/log2(r+2)
"""
import json
import os
import subprocess
import time

import numpy as np
import scipy.sparse as sp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REELKIT = os.path.join(ROOT, "target", "release", "reelkit")
DATA = os.path.join(ROOT, "bench", "data")


def zipf_interactions(n_users, n_items, nnz, seed, exponent=1.0, factors=16, signal=2.0):
    """Users with Zipf activity pick items with a Zipf popularity prior tilted by a
    low-rank taste: a synthetic stand-in for a ratings set turned implicit."""
    rng = np.random.default_rng(seed)
    u_w = 1.0 / np.arange(1, n_users + 1) ** (exponent * 0.6)
    u_w /= u_w.sum()
    counts = np.maximum(1, rng.multinomial(nnz, u_w))
    pop = 1.0 / np.arange(1, n_items + 1) ** exponent
    pop = rng.permutation(pop)
    U = rng.normal(size=(n_users, factors)) / np.sqrt(factors)
    V = rng.normal(size=(n_items, factors)) / np.sqrt(factors)
    users, items = [], []
    for u in range(n_users):
        k = min(counts[u], n_items // 2)
        logits = np.log(pop) + signal * (V @ U[u]) * np.sqrt(factors)
        g = rng.gumbel(size=n_items)
        chosen = np.argpartition(-(logits + g), k)[:k]
        users.append(np.full(k, u, dtype=np.int64))
        items.append(chosen.astype(np.int64))
    return np.concatenate(users), np.concatenate(items)


def per_user_split(users, items, frac, seed):
    """Seeded per-user split: round(frac * n) of each user's items go to test."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    test_mask = np.zeros(len(users), dtype=bool)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    for s, e in zip(starts, ends):
        n = e - s
        k = int(round(frac * n))
        if k:
            test_mask[s + rng.permutation(n)[:k]] = True
    return (users[~test_mask], items[~test_mask]), (users[test_mask], items[test_mask])


def csr(users, items, n_users, n_items):
    m = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
    m.data[:] = 1.0
    return m


def ndcg_at_k(recs, test_csr, k=10):
    """recs: dict user -> list of item indices (best first)."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    total, n = 0.0, 0
    for u in range(test_csr.shape[0]):
        rel = test_csr.indices[test_csr.indptr[u]:test_csr.indptr[u + 1]]
        if len(rel) == 0:
            continue
        rel = set(rel.tolist())
        r = recs.get(u, [])[:k]
        dcg = sum(disc[i] for i, it in enumerate(r) if it in rel)
        idcg = disc[: min(k, len(rel))].sum()
        total += dcg / idcg
        n += 1
    return total / max(n, 1)


def top_k_scores(scores, train_csr, k):
    """Top-k per row of a dense score matrix, training items excluded."""
    scores = scores.copy()
    for u in range(train_csr.shape[0]):
        scores[u, train_csr.indices[train_csr.indptr[u]:train_csr.indptr[u + 1]]] = -np.inf
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    order = np.argsort(-scores[rows, part], axis=1, kind="stable")
    return {u: part[u, order[u]].tolist() for u in range(scores.shape[0])}


def write_csv(path, users, items):
    with open(path, "w") as f:
        f.write("user_id,item_id\n")
        for u, i in zip(users.tolist(), items.tolist()):
            f.write(f"{u},{i}\n")


def run_reelkit(args):
    t = time.perf_counter()
    out = subprocess.run([REELKIT] + args, check=True, capture_output=True, text=True)
    return out.stdout, time.perf_counter() - t


def machine():
    import platform
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except Exception:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def dump(name, obj):
    os.makedirs(DATA, exist_ok=True)
    print(json.dumps(obj, indent=2))
    with open(os.path.join(DATA, name), "w") as f:
        json.dump(obj, f, indent=2)
