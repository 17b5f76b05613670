"""Approximate top-K retrieval: reelkit's IVF index vs FAISS IVF-Flat, IVF-SQ8 (and
HNSW up to --hnsw-max-items), same vectors, same queries, same run.

    bench/.venv/bin/pip install -r bench/requirements.txt
    cargo build --release --bin reelkit
    bench/.venv/bin/python bench/ann_vs_faiss.py [--items 10000000] [--data clustered]

ann-benchmarks methodology: recall@k of each index against the exact top-k (FAISS
IndexFlatIP on the same arrays), batch queries/s (one call with every query, every
core), single-query latency p50/p99 (one query per call), build seconds, index bytes.

Data (numpy, seeded): `clustered` draws --centres Gaussian centres (variance 1/dim per
coordinate) and each vector as a centre plus --noise times a fresh such normal;
`gaussian` draws independent normals (the worst case for an inverted file). Items and
queries come from the same distribution. Vectors are written as raw f32 under
bench/data/ and handed to `reelkit bench topk --index ivf` (which tunes its nprobe to
--target-recall on a separate sample, then measures). FAISS's IVF indexes use the inner
product metric, nlist = 4·sqrt(N) (its documented guideline) trained on 64·nlist
points; each index's build time is the quantizer's training (done once, shared, and
counted for each) plus its own add. The comparison takes, for each FAISS index, the
smallest nprobe of the sweep whose recall reaches the target. Never run by CI.
"""
import argparse
import json
import os
import resource
import subprocess
import time

import faiss
import numpy as np

from common import DATA, REELKIT, machine


def draw(rng, n, dim, centres, noise, chunk=1 << 20):
    out = np.empty((n, dim), dtype=np.float32)
    s = 1.0 / np.sqrt(dim)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        z = rng.standard_normal((hi - lo, dim), dtype=np.float32) * s
        if centres is None:
            out[lo:hi] = z
        else:
            out[lo:hi] = centres[rng.integers(0, len(centres), hi - lo)] + noise * z
    return out


def timed_search(index, xq, k, single):
    index.search(xq[:16], k)  # warm-up
    t = time.perf_counter()
    _, ids = index.search(xq, k)
    batch = time.perf_counter() - t
    lat = []
    for i in range(single):
        q = xq[i % len(xq): i % len(xq) + 1]
        t = time.perf_counter()
        index.search(q, k)
        lat.append(time.perf_counter() - t)
    lat.sort()
    return ids, len(xq) / batch, lat[len(lat) // 2] * 1e3, lat[int(round((len(lat) - 1) * 0.99))] * 1e3


def recall(ids, truth):
    k = truth.shape[1]
    return float(np.mean([len(set(ids[i]) & set(truth[i])) / k for i in range(len(truth))]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=1024)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--single", type=int, default=200)
    ap.add_argument("--data", choices=["clustered", "gaussian"], default="clustered")
    ap.add_argument("--centres", type=int, default=4096)
    ap.add_argument("--noise", type=float, default=0.35)
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--nprobe", default="8,12,16,24,32,48,64,96,128,192,256",
                    help="FAISS's nprobe sweep (each index stops 0.02 past the target)")
    ap.add_argument("--reelkit-nprobe", default="8,10,12,14,16,20,24,28,32,40,48,64",
                    help="reelkit's nprobe sweep (its nlist is 4·sqrt(N) too)")
    ap.add_argument("--hnsw-max-items", type=int, default=1_000_000)
    ap.add_argument("--skip-faiss", action="store_true")
    ap.add_argument("--reelkit-args", default="", help="extra arguments for reelkit bench topk")
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args()
    faiss.omp_set_num_threads(os.cpu_count())
    os.makedirs(DATA, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    centres = draw(rng, a.centres, a.dim, None, 1.0) if a.data == "clustered" else None
    t = time.perf_counter()
    xb = draw(rng, a.items, a.dim, centres, a.noise)
    xq = draw(rng, a.queries, a.dim, centres, a.noise)
    gen_s = time.perf_counter() - t
    items_f, queries_f, ids_f = (os.path.join(DATA, n) for n in ("ann_items.f32", "ann_queries.f32", "ann_exact_ids.u32"))
    xb.tofile(items_f)
    xq.tofile(queries_f)
    report = {"machine": machine(), "faiss": faiss.__version__, "items": a.items, "dim": a.dim,
              "queries": a.queries, "k": a.k, "data": a.data, "centres": a.centres if centres is not None else None,
              "noise": a.noise, "target_recall": a.target_recall, "generate_s": gen_s}

    cmd = [REELKIT, "bench", "topk", "--dim", str(a.dim), "--k", str(a.k), "--single", str(a.single),
           "--index", "ivf", "--target-recall", str(a.target_recall), "--filter-share", "0.2", "--exclude", "1000",
           "--items-file", items_f, "--queries-file", queries_f, "--ids-out", ids_f,
           "--nprobe", a.reelkit_nprobe] + a.reelkit_args.split()
    t = time.perf_counter()
    rk = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    report["reelkit_wall_s"] = time.perf_counter() - t
    report["reelkit"] = rk
    rk_exact = np.fromfile(ids_f, dtype=np.uint32).reshape(a.queries, -1)
    if a.skip_faiss:
        print(json.dumps(report, indent=1))
        return

    flat = faiss.IndexFlatIP(a.dim)
    flat.add(xb)
    t = time.perf_counter()
    _, truth = flat.search(xq, a.k)
    report["faiss_flat_batch_s"] = time.perf_counter() - t
    report["reelkit_exact_overlap_with_faiss_flat"] = recall(rk_exact, truth)
    del flat

    nlist = int(round(4 * np.sqrt(a.items)))
    train_n = min(a.items, 64 * nlist)
    sample = xb[np.sort(rng.choice(a.items, train_n, replace=False))]
    quantizer = faiss.IndexFlatIP(a.dim)
    ivf_flat = faiss.IndexIVFFlat(quantizer, a.dim, nlist, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    ivf_flat.train(sample)
    train_s = time.perf_counter() - t
    faiss_runs = {}
    for name in ("ivf_flat", "ivf_sq8"):
        if name == "ivf_flat":
            index, extra_train = ivf_flat, 0.0
        else:
            index = faiss.IndexIVFScalarQuantizer(ivf_flat.quantizer, a.dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
            t = time.perf_counter()
            index.train(sample)  # the quantizer is already trained: this fits the SQ8 ranges
            extra_train = time.perf_counter() - t
        t = time.perf_counter()
        index.add(xb)
        add_s = time.perf_counter() - t
        curve = []
        for nprobe in [int(x) for x in a.nprobe.split(",")]:
            index.nprobe = nprobe
            ids, qps, p50, p99 = timed_search(index, xq, a.k, a.single)
            curve.append({"nprobe": nprobe, "recall_at_k": recall(ids, truth), "batch_queries_per_s": qps,
                          "single_p50_ms": p50, "single_p99_ms": p99})
            if curve[-1]["recall_at_k"] >= a.target_recall + 0.02:
                break
        code = a.dim * (4 if name == "ivf_flat" else 1)
        faiss_runs[name] = {"nlist": nlist, "train_s": train_s + extra_train, "add_s": add_s,
                            "build_s": train_s + extra_train + add_s,
                            "index_mb": (a.items * (code + 8) + nlist * a.dim * 4) / 1e6, "curve": curve}
        if name == "ivf_sq8":
            del index
    del ivf_flat
    if a.items <= a.hnsw_max_items:
        index = faiss.IndexHNSWFlat(a.dim, 32, faiss.METRIC_INNER_PRODUCT)
        t = time.perf_counter()
        index.add(xb)
        build = time.perf_counter() - t
        curve = []
        for ef in (128, 256, 512, 1024):
            index.hnsw.efSearch = ef
            ids, qps, p50, p99 = timed_search(index, xq, a.k, a.single)
            curve.append({"ef_search": ef, "recall_at_k": recall(ids, truth), "batch_queries_per_s": qps,
                          "single_p50_ms": p50, "single_p99_ms": p99})
            if curve[-1]["recall_at_k"] >= a.target_recall + 0.02:
                break
        faiss_runs["hnsw32"] = {"build_s": build, "curve": curve}
    report["faiss_runs"] = faiss_runs

    ivf = rk["ivf"]
    # reelkit's point: the smallest swept nprobe reaching the target on the
    # measured queries (as for FAISS); the tuned one is reported beside it.
    ok = [c for c in ivf["curve"] if c["recall_at_k"] >= a.target_recall]
    mine = ok[0] if ok else ivf["tuned"]
    summary = {"reelkit_ivf": {"nprobe": mine["nprobe"], "recall_at_k": mine["recall_at_k"],
                               "batch_queries_per_s": mine["batch_queries_per_s"],
                               "single_p50_ms": mine["single_p50_ms"], "single_p99_ms": mine["single_p99_ms"],
                               "build_s": ivf["build_s"], "index_mb": ivf["index_mb"],
                               "index_vs_int8_table": ivf["index_vs_int8_table"]},
               "reelkit_ivf_tuned": ivf["tuned"], "reelkit_ivf_filtered": ivf.get("filtered")}
    for name, run in faiss_runs.items():
        ok = [c for c in run["curve"] if c["recall_at_k"] >= a.target_recall]
        if not ok:
            summary[name] = {"reached_target": False, "best_recall": max(c["recall_at_k"] for c in run["curve"])}
            continue
        c = ok[0]
        summary[name] = dict(c, build_s=run["build_s"],
                             batch_reelkit_over_this=mine["batch_queries_per_s"] / c["batch_queries_per_s"],
                             single_p50_this_over_reelkit=c["single_p50_ms"] / mine["single_p50_ms"],
                             build_this_over_reelkit=run["build_s"] / ivf["build_s"])
    report["at_target_recall"] = summary
    # Peak resident memory: the reelkit process (a child) and this one (numpy
    # data, FAISS indexes); Linux reports KiB.
    report["peak_rss_mib"] = {
        "reelkit": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "python_faiss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(report, indent=1))
    with open(os.path.join(DATA, f"ann_vs_faiss_{a.data}_{a.items}.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
