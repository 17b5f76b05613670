"""Non-factor baselines on a real set's development split (issue 31): the
peers' validation part of bench/real.py (a per-user 80/20 split of the
training part, seeds 42 then 43), never its test part.

    bench/.venv/bin/python bench/dev_baselines.py bx100k|lastfm

Popularity, item-kNN (cosine, + a popularity term), user-kNN (cosine),
sparse RP3beta (any catalogue size: item x item products of a sparse
matrix), implicit ALS + a popularity term; each with its mean NDCG@10 and
the paired difference to popularity with its standard error.
"""
import sys

import numpy as np
import scipy.sparse as sp

import real
from common import per_user_split, top_k_scores

name = sys.argv[1] if len(sys.argv) > 1 else "bx100k"
uu, ii, _, u, i, _ = real.pairs(name)
nu, ni = len(uu), len(ii)
(tr_u, tr_i), _ = per_user_split(u, i, 0.2, 42)
(va_tu, va_ti), (va_u, va_i) = per_user_split(tr_u, tr_i, 0.2, 43)
x = sp.csr_matrix((np.ones(len(va_tu)), (va_tu, va_ti)), shape=(nu, ni))
vt = sp.csr_matrix((np.ones(len(va_u)), (va_u, va_i)), shape=(nu, ni))
us = np.flatnonzero(np.diff(vt.indptr))
di = np.asarray(x.sum(0)).ravel()
print(f"{name}: {nu} users, {ni} items; development training {x.nnz}, validation {vt.nnz} "
      f"({len(us)} users)", flush=True)


def per_user(score):
    """Each validation user's NDCG@10 of `score(block of users) -> dense scores`."""
    out = []
    for s in range(0, len(us), 2048):
        b = us[s:s + 2048]
        tops = top_k_scores(np.asarray(score(b), dtype=np.float64), x[b], 10)
        for r, u_ in enumerate(b):
            t = set(vt.indices[vt.indptr[u_]:vt.indptr[u_ + 1]])
            rec = tops[r]
            dcg = sum(1 / np.log2(k + 2) for k, j in enumerate(rec[:10]) if j in t)
            out.append(dcg / sum(1 / np.log2(k + 2) for k in range(min(10, len(t)))))
    return np.array(out)


pop = per_user(lambda b: np.tile(di, (len(b), 1)))
print(f"popularity: {pop.mean():.5f}")


def report(label, v):
    d = v - pop
    print(f"{label}: {v.mean():.5f}  vs popularity {d.mean():+.5f} ± {d.std(ddof=1) / np.sqrt(len(d)):.5f}",
          flush=True)


xn = x @ sp.diags(1 / np.sqrt(np.maximum(di, 1)))
sim = (xn.T @ xn).tocsr()
sim.setdiag(0)
sim.eliminate_zeros()
for w in [0, 0.01, 0.1]:
    report(f"item-kNN + {w}·ln(1+n)", per_user(lambda b: (x[b] @ sim).toarray() + w * np.log1p(di)[None, :]))
du = np.asarray(x.sum(1)).ravel()
xu = sp.diags(1 / np.sqrt(np.maximum(du, 1))) @ x
report("user-kNN", per_user(lambda b: ((xu[b] @ xu.T) @ x).toarray() + 1e-6 * di[None, :]))


def sparse_rp3(a, beta):
    pui = sp.diags(1 / np.maximum(du, 1)) @ x
    piu = sp.diags(1 / np.maximum(di, 1)) @ x.T.tocsr()
    pui.data **= a
    piu.data **= a
    w = ((piu @ pui) @ sp.diags(1 / np.maximum(di, 1) ** beta)).tocsr()
    w.setdiag(0)
    w.eliminate_zeros()
    return w


for a in [0.5, 0.75, 1.0]:
    for beta in [0.0, 0.25, 0.5]:
        w = sparse_rp3(a, beta)
        report(f"RP3beta α {a} β {beta} (all neighbours)", per_user(lambda b: (x[b] @ w).toarray()))
U, V = real.als(x, 64, 0.01, 4.0, 15)
rms = np.sqrt(((U[us[:500]] @ V.T) ** 2).mean())
for w in [0, 0.1, 0.2, 0.5]:
    report(f"implicit ALS (64f, reg 0.01, α 4) + {w}·ln(1+n)",
           per_user(lambda b: (U[b] @ V.T) / rms + w * np.log1p(di)[None, :]))
