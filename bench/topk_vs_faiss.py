"""Exact top-K retrieval: reelkit vs FAISS IndexFlatIP vs numpy, same data, same run.

    bench/.venv/bin/pip install -r bench/requirements.txt faiss-cpu
    cargo build --release
    bench/.venv/bin/python bench/topk_vs_faiss.py [--items 1000000] [--dim 64] [--queries 1024] [--k 100]

Draws seeded Gaussian items and queries with numpy, writes them as raw f32 under
bench/data/, runs `reelkit bench topk` on those files (which also writes its top-k
ids), then FAISS IndexFlatIP (batch and one query at a time, its own threads on every
core), numpy (matmul + argpartition, OpenBLAS on every core) and OpenBLAS sgemm alone
(the same product, scores written out, no selection: the machine's sgemm figure) on
the same arrays, and prints one JSON object with the figures, the ratios and the
overlap of reelkit's and FAISS's top-k sets. Never run by CI.
"""
import argparse
import json
import os
import subprocess
import time

import faiss
import numpy as np

from common import DATA, REELKIT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=1024)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--single", type=int, default=100)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    os.makedirs(DATA, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    xb = (rng.standard_normal((a.items, a.dim)) / np.sqrt(a.dim)).astype(np.float32)
    xq = (rng.standard_normal((a.queries, a.dim)) / np.sqrt(a.dim)).astype(np.float32)
    items_f, queries_f, ids_f = (os.path.join(DATA, n) for n in ("topk_items.f32", "topk_queries.f32", "topk_ids.u32"))
    xb.tofile(items_f)
    xq.tofile(queries_f)

    out = subprocess.run([REELKIT, "bench", "topk", "--dim", str(a.dim), "--k", str(a.k),
                          "--single", str(a.single), "--half", "--int8",
                          "--items-file", items_f, "--queries-file", queries_f, "--ids-out", ids_f],
                         check=True, capture_output=True, text=True).stdout
    rk = json.loads(out)
    rk_ids = np.fromfile(ids_f, dtype=np.uint32).reshape(a.queries, -1)

    index = faiss.IndexFlatIP(a.dim)
    index.add(xb)
    index.search(xq[:8], a.k)  # warm-up
    t = time.perf_counter()
    _, fa_ids = index.search(xq, a.k)
    faiss_batch = time.perf_counter() - t
    lat = []
    for i in range(a.single):
        t = time.perf_counter()
        index.search(xq[i % a.queries: i % a.queries + 1], a.k)
        lat.append(time.perf_counter() - t)
    lat.sort()
    faiss_p50 = lat[len(lat) // 2]

    t = time.perf_counter()
    for s in range(0, a.queries, 256):
        sc = xq[s:s + 256] @ xb.T
        part = np.argpartition(-sc, a.k, axis=1)[:, :a.k]
        np.take_along_axis(sc, part, axis=1)
    numpy_batch = time.perf_counter() - t

    # OpenBLAS sgemm alone on the same product, best of three.
    blocks = []
    for _ in range(3):
        t = time.perf_counter()
        for s in range(0, a.items, 65536):
            np.dot(xq, xb[s:s + 65536].T)
        blocks.append(time.perf_counter() - t)
    sgemm_s = min(blocks)
    flops = 2.0 * a.items * a.dim * a.queries
    # The machine's sgemm peak: a large square product, best of five.
    sq = rng.standard_normal((2048, 2048)).astype(np.float32)
    sq @ sq
    peak = []
    for _ in range(5):
        t = time.perf_counter()
        sq @ sq
        peak.append(time.perf_counter() - t)
    peak_gflops = 2.0 * 2048 ** 3 / min(peak) / 1e9

    overlap = float(np.mean([len(set(rk_ids[i]) & set(fa_ids[i])) / a.k for i in range(a.queries)]))
    ex = rk["exact_f32"]
    print(json.dumps({
        "items": a.items, "dim": a.dim, "queries": a.queries, "k": a.k,
        "faiss": faiss.__version__, "numpy": np.__version__,
        "faiss_batch_qps": a.queries / faiss_batch,
        "faiss_single_p50_ms": faiss_p50 * 1e3,
        "numpy_batch_qps": a.queries / numpy_batch,
        "openblas_sgemm_gflop_s": flops / sgemm_s / 1e9,
        "reelkit_batch_gflop_s": ex["batch_gflop_s"],
        "reelkit_matrixmultiply_sgemm_gflop_s": rk["sgemm_gflop_s"],
        "ratio_batch_reelkit_over_openblas_sgemm": ex["batch_gflop_s"] / (flops / sgemm_s / 1e9),
        "openblas_square_sgemm_peak_gflop_s": peak_gflops,
        "ratio_batch_reelkit_over_sgemm_peak": ex["batch_gflop_s"] / peak_gflops,
        "reelkit_int8_batch_qps": rk["int8_rescored"]["batch_queries_per_s"],
        "reelkit_int8_single_p50_ms": rk["int8_rescored"]["single_p50_ms"],
        "reelkit_int8_recall": rk["int8_rescored"]["recall_at_k"],
        "ratio_int8_batch_over_faiss": rk["int8_rescored"]["batch_queries_per_s"] / (a.queries / faiss_batch),
        "reelkit_batch_qps": ex["batch_queries_per_s"],
        "reelkit_single_p50_ms": ex["single_p50_ms"],
        "reelkit_f16_single_p50_ms": rk["f16_rescored"]["single_p50_ms"],
        "reelkit_stream_read_gb_s": rk["stream_read_gb_s"],
        "reelkit_stream_read_p50_ms": ex["stream_read_p50_ms"],
        "reelkit_single_bandwidth_vs_stream": ex["single_bandwidth_vs_stream"],
        "reelkit_single_best_vs_stream_best": ex["single_best_vs_stream_best"],
        "ratio_batch_reelkit_over_faiss": ex["batch_queries_per_s"] / (a.queries / faiss_batch),
        "ratio_batch_reelkit_over_numpy": ex["batch_queries_per_s"] / (a.queries / numpy_batch),
        "ratio_single_faiss_over_reelkit_latency": faiss_p50 * 1e3 / ex["single_p50_ms"],
        "top_k_set_overlap_with_faiss": overlap,
    }, indent=1))


if __name__ == "__main__":
    main()
