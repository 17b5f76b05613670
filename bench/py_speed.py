"""The Python package against the Rust command line, side by side in one run
(issue 32): `Model.recommend` for 10,000 users, top 100, against `reelkit
bench recommend` on the same model file; `reelkit.ab.analyze` of a frame of
about 5 M impressions against `reelkit ab analyze` of the same rows as
Parquet. Reports each pair and the ratio Python / Rust (target ≤ 1.2).

    cd python && maturin develop --release   # into the venv running this
    python bench/py_speed.py [--reps 3]

Needs the release binary (cargo build --release) and a release build of the
package; the frames are read before the clock starts (a notebook holds them).
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

import reelkit

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / "target" / "release" / "reelkit")

p = argparse.ArgumentParser()
p.add_argument("--reps", type=int, default=3)
p.add_argument("--items", type=int, default=100_000)
p.add_argument("--users", type=int, default=10_000)
p.add_argument("--impression-users", type=int, default=15_000)
args = p.parse_args()


def best(f, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times), times


out = {"machine_threads": os.cpu_count()}
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    # 1. Recommend: a 64-dim model of random factors, 10k users x 100k items.
    rng = np.random.default_rng(42)
    u = rng.standard_normal((args.users, 64), dtype=np.float32)
    v = rng.standard_normal((args.items, 64), dtype=np.float32)
    m = reelkit.Model.from_factors(list(range(args.users)), u, list(range(args.items)), v)
    m.save(tmp / "m.arrow")
    model = reelkit.Model.load(tmp / "m.arrow", retrieval="int8")
    pl.DataFrame({"user_id": list(range(args.users))}).write_csv(tmp / "users.csv")
    users = list(range(args.users))
    py_s, py_all = best(lambda: model.recommend(users, k=100), args.reps)

    def rust():
        r = subprocess.run([CLI, "bench", "recommend", "--model", str(tmp / "m.arrow"), "--users",
                            str(tmp / "users.csv"), "--k", "100", "--retrieval", "int8"],
                           capture_output=True, text=True, check=True)
        return json.loads(r.stdout)["seconds"]

    rust_all = [rust() for _ in range(args.reps)]
    out["recommend"] = {"users": args.users, "items": args.items, "k": 100, "retrieval": "int8",
                        "python_s": py_s, "python_runs": py_all, "rust_bench_s": min(rust_all),
                        "rust_runs": rust_all, "ratio_python_to_rust": py_s / min(rust_all)}
    # 2. A/B analysis of ~5M impressions.
    sim_dir = tmp / "sim"
    reelkit.simulate(users=args.impression_users, videos=20_000, days=14, seed=3, out=sim_dir)
    events = pl.read_parquet(sim_dir / "events.parquet")
    asg = reelkit.ab.assign(events["user_id"].unique(), arms="control=0.5,treatment=0.5", salt="bench")
    asg.write_csv(tmp / "a.csv")
    py_ab, py_ab_all = best(lambda: reelkit.ab.analyze(events, asg), args.reps)

    def rust_ab():
        t = time.perf_counter()
        subprocess.run([CLI, "ab", "analyze", "--events", str(sim_dir / "events.parquet"), "--assignments",
                        str(tmp / "a.csv"), "--out", str(tmp / "report")], capture_output=True, check=True)
        return time.perf_counter() - t

    rust_ab_all = [rust_ab() for _ in range(args.reps)]
    out["ab_analyze"] = {"impressions": events.height, "python_s": py_ab, "python_runs": py_ab_all,
                         "cli_s": min(rust_ab_all), "cli_runs": rust_ab_all,
                         "ratio_python_to_cli": py_ab / min(rust_ab_all)}
print(json.dumps(out, indent=2))
