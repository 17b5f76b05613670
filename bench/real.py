"""The real-data branch of ndcg_vs_peers.py (issue 31): peers tuned on a
validation split of the training part, reelkit tune + recommend on the
training part in its raw format, NDCG@10 on the held-out 20%."""
import json
import os
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from common import DATA, dump, machine, ndcg_at_k, per_user_split, run_reelkit, top_k_scores
from real_sets import load, write_raw


def matrix(u, i, w, n_users, n_items, conf):
    v = np.ones(len(u), dtype=np.float64) if conf == "binary" else np.log1p(w).astype(np.float64) + 1.0
    return sp.csr_matrix((v, (u, i)), shape=(n_users, n_items))


def ease(x, lam):
    """EASE scores through Woodbury: S = X - K^-1 X diag(P)^-1, K = lam I + X X^T
    (users x users), diag(P)_j = (1 - x_j^T K^-1 x_j) / lam."""
    xd = x.toarray()
    k = xd @ xd.T
    k[np.diag_indices_from(k)] += lam
    kinv_x = np.linalg.solve(k, xd)
    diag = (1.0 - np.einsum("uj,uj->j", xd, kinv_x)) / lam
    return xd - kinv_x / diag


def rp3beta(x, alpha, beta, topk):
    """RP3beta (Paudel et al. 2017) on binary X: W = P_iu^a P_uj^a / deg(j)^b,
    each item's row kept to its topk largest."""
    xb = x.copy()
    xb.data[:] = 1.0
    du = np.asarray(xb.sum(1)).ravel()
    di = np.asarray(xb.sum(0)).ravel()
    pui = sp.diags(1.0 / np.maximum(du, 1)) @ xb
    piu = sp.diags(1.0 / np.maximum(di, 1)) @ xb.T.tocsr()
    pui.data **= alpha
    piu.data **= alpha
    w = (piu @ pui).toarray()
    w /= np.maximum(di, 1)[None, :] ** beta
    np.fill_diagonal(w, 0.0)
    if topk and topk < w.shape[1]:
        idx = np.argpartition(-w, topk, axis=1)[:, topk:]
        np.put_along_axis(w, idx, 0.0, axis=1)
    return xb @ w


def als(x, f, reg, alpha, it):
    from implicit.cpu.als import AlternatingLeastSquares
    with threadpool_limits(limits=1, user_api="blas"):
        m = AlternatingLeastSquares(factors=f, regularization=reg, alpha=alpha, iterations=it,
                                    random_state=1, num_threads=2)
        m.fit(x.tocsr().astype(np.float32), show_progress=False)
    return np.asarray(m.user_factors), np.asarray(m.item_factors)


def bpr(x, f, lr, reg, it):
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    m = BayesianPersonalizedRanking(factors=f, learning_rate=lr, regularization=reg, iterations=it,
                                    random_state=1, num_threads=2)
    m.fit(x.tocsr().astype(np.float32), show_progress=False)
    return np.asarray(m.user_factors), np.asarray(m.item_factors)


def ndcg(scores, train, test):
    """NDCG@10 of dense scores or of factors (U, V), scored in blocks of the
    users with test items (a dense users x items matrix of a large catalogue
    does not fit)."""
    users = np.flatnonzero(np.diff(test.indptr))
    recs = {}
    for s in range(0, len(users), 1024):
        us = users[s:s + 1024]
        block = scores[0][us] @ scores[1].T if isinstance(scores, tuple) else np.asarray(scores)[us]
        recs.update({int(us[r]): v for r, v in top_k_scores(block, train[us], 10).items()})
    return ndcg_at_k(recs, test)


def pairs(name):
    """A set's cleaned rows as one pair per (user, item), weights summed:
    (raw user ids, raw item ids, pair keys, user index, item index, weight)."""
    users, items, weights = load(name)
    uu, ui = np.unique(users, return_inverse=True)
    ii, iix = np.unique(items.astype(str), return_inverse=True)
    key = ui.astype(np.int64) * len(ii) + iix
    keys, inv = np.unique(key, return_inverse=True)
    w = np.bincount(inv, weights=weights)
    u = (keys // len(ii)).astype(np.int64)
    i = (keys % len(ii)).astype(np.int64)
    return uu, ii, keys, u, i, w


def main(args):
    uu, ii, keys, u, i, w = pairs(args.data)
    n_users, n_items = len(uu), len(ii)
    (tr_u, tr_i), (te_u, te_i) = per_user_split(u, i, 0.2, args.seed)
    wmap = dict(zip(keys.tolist(), w.tolist()))
    tr_w = np.array([wmap[a * n_items + b] for a, b in zip(tr_u.tolist(), tr_i.tolist())])
    (va_tu, va_ti), (va_u, va_i) = per_user_split(tr_u, tr_i, 0.2, args.seed + 1)
    va_tw = np.array([wmap[a * n_items + b] for a, b in zip(va_tu.tolist(), va_ti.tolist())])
    test = matrix(te_u, te_i, np.ones(len(te_u)), n_users, n_items, "binary")
    vtest = matrix(va_u, va_i, np.ones(len(va_u)), n_users, n_items, "binary")
    print(f"{args.data}: {n_users} users, {n_items} items, {len(u)} pairs; train {len(tr_u)}, test {len(te_u)}",
          flush=True)
    peers = {}

    def tune(name, grid, fit):
        best, best_cfg = -1.0, None
        t = time.perf_counter()
        for cfg in grid:
            conf = cfg[0]
            vx = matrix(va_tu, va_ti, va_tw, n_users, n_items, conf)
            s = ndcg(fit(vx, *cfg[1:]), vx, vtest)
            if s > best:
                best, best_cfg = s, cfg
        x = matrix(tr_u, tr_i, tr_w, n_users, n_items, best_cfg[0])
        score = ndcg(fit(x, *best_cfg[1:]), x, test)
        peers[name] = {"ndcg@10": score, "setting": list(best_cfg), "validation": best,
                       "tuning_s": time.perf_counter() - t, "settings": len(grid)}
        print(f"{name} {best_cfg}: validation {best:.4f}, test {score:.4f}", flush=True)

    cache = os.path.join(DATA, f"peers_{args.data}.json")
    confs = ["binary", "log"]
    if args.skip_peers and os.path.exists(cache):
        peers.update(json.load(open(cache)))
        print(f"peers from {cache}", flush=True)
    else:
        run_peers(tune, confs, n_items)
        json.dump(peers, open(cache, "w"), indent=2)
    dev = getattr(args, "dev", False)
    if dev:
        # Development: reelkit trains on the peers' validation-training part
        # and is judged on their validation part (the test part stays unseen);
        # the peers' figure is their best validation NDCG (chosen on it: an
        # optimistic bar).
        tr_u, tr_i, tr_w, test = va_tu, va_ti, va_tw, vtest
        for k in peers:
            peers[k] = dict(peers[k], **{"ndcg@10": peers[k]["validation"]})
    run_reelkit_and_report(args, uu, ii, tr_u, tr_i, tr_w, test, peers, n_users, n_items, len(u), dev)


def run_peers(tune, confs, n_items):
    # EASE and RP3beta in numpy hold dense items x items (or users x items)
    # matrices: beyond 20,000 items they do not fit this machine's memory.
    if n_items > 20_000:
        print(f"ease, rp3beta: left out ({n_items} items: dense item-item matrices do not fit)", flush=True)
    with threadpool_limits(limits=2):
        if n_items > 20_000:
            confs_dense = []
        else:
            confs_dense = confs
        if confs_dense:
            tune("ease", [(c, lam) for c in confs_dense for lam in [1, 3, 10, 30, 100, 300, 1000, 3000]], ease)
            tune("rp3beta", [("binary", a, b, k) for a in [0.5, 0.75, 1.0] for b in [0.0, 0.25, 0.5, 0.75]
                             for k in [50, 200, 0]], rp3beta)
    tune("implicit_als", [(c, f, reg, a, 15) for c in confs for f in [64, 128, 256]
                          for reg in [0.01, 0.1, 1.0, 10.0] for a in [1.0, 4.0, 16.0, 64.0]], als)
    tune("implicit_bpr", [("binary", f, lr, reg, it) for f in [64, 128] for lr in [0.01, 0.05]
                          for reg in [0.001, 0.01] for it in [100, 300]], bpr)


def run_reelkit_and_report(args, uu, ii, tr_u, tr_i, tr_w, test, peers, n_users, n_items, pairs, dev):
    # reelkit: the training part in the set's own raw format, one command each.
    tag = os.path.join(DATA, f"real_{args.data}" + ("_dev" if dev else ""))
    raw_ids_u, raw_ids_i = uu[tr_u], ii[tr_i]
    ext = os.environ.get("RAW_EXT", ".raw")
    write_raw(args.data, tag + "_train" + ext, raw_ids_u, raw_ids_i, tr_w)
    fmt = args.tune.split() if args.tune else []
    tune_out, tune_s = run_reelkit(["--threads", "2", "tune", "--interactions", tag + "_train" + ext,
                                    "--out", tag + ".arrow", "--report", tag + "_tune.csv"] + fmt)
    _, rec_s = run_reelkit(["--threads", "2", "recommend", "--model", tag + ".arrow", "--k", "10",
                            "--exclude", tag + "_train" + ext, "--out", tag + "_recs.csv"] + fmt)
    index_u = {str(x): n for n, x in enumerate(uu.tolist())}
    index_i = {str(x): n for n, x in enumerate(ii.tolist())}
    recs = {}
    import csv as _csv
    with open(tag + "_recs.csv") as fh:
        for row in _csv.DictReader(fh):
            recs.setdefault(index_u[row["user_id"]], []).append(index_i.get(row["item_id"], -1))
    rk = ndcg_at_k(recs, test)
    best_peer = max(peers, key=lambda k: peers[k]["ndcg@10"])
    print(f"reelkit tune: {rk:.4f} ({tune_s:.1f} s); best peer {best_peer} {peers[best_peer]['ndcg@10']:.4f}: "
          f"{100 * (rk / peers[best_peer]['ndcg@10'] - 1):+.1f}%", flush=True)
    dump(f"ndcg_{args.data}{'_dev' if dev else ''}.json", {
        "machine": machine(), "data": args.data, "users": n_users, "items": n_items, "pairs": int(pairs),
        "ndcg@10": {"reelkit_tune": rk, **{k: v["ndcg@10"] for k, v in peers.items()}},
        "peers": peers, "reelkit": {"tune_s": tune_s, "recommend_s": rec_s, "args": args.tune,
                                    "tune_stdout": tune_out[-2000:]},
    })
