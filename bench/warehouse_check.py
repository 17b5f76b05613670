#!/usr/bin/env python3
"""The warehouse path, checked end to end: `reelkit ab sql` run on Apache Spark
(pyspark, local mode) and on DuckDB, the exported per-arm sums analysed with
`reelkit ab analyze --stats`, and every number of the result compared with the
native report (`reelkit ab analyze --events`) of the same data.

    python3 -m venv bench/.venv && bench/.venv/bin/pip install -r bench/requirements.txt
    cargo build --release && reelkit demo          # the demo's data (notebooks-output/demo/data)
    bench/.venv/bin/python bench/warehouse_check.py [--impressions 5000000] [--skip-spark]

Datasets: the demo's (three arms, 7-day pre-period, CUPED) and a synthetic
5M-impression log (`reelkit bench ab`'s generator, split at day 7 into a
pre-period and an experiment). Spark needs a Java 17 runtime
(apt-get install openjdk-17-jre-headless). Run by hand, never by CI; the
figures go to BENCHMARKS.md ("A/B analysis in a warehouse").

Exit status 1 if any number differs by more than 1e-9 relative.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REELKIT = os.path.join(ROOT, "target", "release", "reelkit")
TOL = 1e-9


def reelkit(*args, quiet=True):
    t = time.perf_counter()
    out = subprocess.run([REELKIT, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"reelkit {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout, time.perf_counter() - t


def numbers(obj, path=""):
    """Every number in a JSON value, keyed by its path."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return {}
    if isinstance(obj, (int, float)):
        return {path: float(obj)}
    out = {}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in items:
        out.update(numbers(v, f"{path}/{k}"))
    return out


def compare(native, other, name):
    """Worst relative difference between two report.json files; lists misses."""
    a, b = numbers(native), numbers(other)
    missing = sorted(set(a) ^ set(b))
    worst, where = 0.0, ""
    for k in a.keys() & b.keys():
        x, y = a[k], b[k]
        if x == y or (math.isnan(x) and math.isnan(y)):
            continue
        scale = max(abs(x), abs(y))
        # Numbers that are zero up to rounding on one side (an effect of
        # exactly 0 computed as 1e-17) compare absolutely against the row's scale.
        rel = abs(x - y) / scale if scale > 1e-12 else abs(x - y)
        if rel > worst:
            worst, where = rel, k
    # Booleans and strings (verdicts, significance) must agree exactly.
    flags = [
        (m["metric"], m["variant"], m["control"])
        for m, n in zip(native["metrics"], other["metrics"])
        if (m["significant"], m["cuped"], m.get("skewed")) != (n["significant"], n["cuped"], n.get("skewed"))
    ]
    verdicts_equal = [d["verdict"] for d in native["decisions"]] == [d["verdict"] for d in other["decisions"]]
    print(f"  {name}: {len(a)} numbers, worst relative difference {worst:.2e} at {where or '-'}"
          f"{'; missing ' + ', '.join(missing[:5]) if missing else ''}"
          f"{'; flags differ ' + str(flags[:3]) if flags else ''}"
          f"{'' if verdicts_equal else '; decisions differ'}")
    return worst <= TOL and not missing and not flags and verdicts_equal, worst


def run_duckdb(sql, tables, out_csv):
    import duckdb

    con = duckdb.connect()
    for name, path in tables.items():
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
    t = time.perf_counter()
    con.execute(f"COPY ({sql.rstrip().rstrip(';')}) TO '{out_csv}' (HEADER, DELIMITER ',')")
    return time.perf_counter() - t


class Spark:
    def __init__(self):
        from pyspark.sql import SparkSession

        t = time.perf_counter()
        self.spark = (
            SparkSession.builder.master("local[2]")
            .appName("reelkit-warehouse-check")
            .config("spark.sql.shuffle.partitions", "8")
            .config("spark.driver.memory", "6g")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")
        self.startup_s = time.perf_counter() - t
        self.version = self.spark.version

    def run(self, sql, tables, out_csv):
        for name, path in tables.items():
            self.spark.read.parquet(path).createOrReplaceTempView(name)
        t = time.perf_counter()
        rows = self.spark.sql(sql.rstrip().rstrip(";")).collect()
        elapsed = time.perf_counter() - t
        cols = rows[0].__fields__ if rows else []
        with open(out_csv, "w") as f:
            f.write(",".join(cols) + "\n")
            for r in rows:
                # repr keeps every digit of a double.
                f.write(",".join(repr(v) if isinstance(v, float) else str(v) for v in r) + "\n")
        return elapsed


def synthetic(work, impressions):
    """`reelkit bench ab`'s generator, split at day 7: (pre, post, assignments)."""
    import duckdb

    d = os.path.join(work, "synthetic")
    os.makedirs(d, exist_ok=True)
    users = max(1000, impressions // 50)
    reelkit("bench", "ab", "--impressions", str(impressions), "--users", str(users), "--dir", d)
    events = os.path.join(d, "bench_events.parquet")
    con = duckdb.connect()
    lo = con.execute(f"SELECT min(ts_ms) FROM read_parquet('{events}')").fetchone()[0]
    cut = lo - lo % 86_400_000 + 7 * 86_400_000
    pre, post = os.path.join(d, "pre.parquet"), os.path.join(d, "post.parquet")
    con.execute(f"COPY (SELECT * FROM read_parquet('{events}') WHERE ts_ms < {cut}) TO '{pre}' (FORMAT PARQUET)")
    con.execute(f"COPY (SELECT * FROM read_parquet('{events}') WHERE ts_ms >= {cut}) TO '{post}' (FORMAT PARQUET)")
    return pre, post, os.path.join(d, "bench_assignments.parquet"), "control"


def check(name, pre, post, assignments, control, work, spark):
    print(f"\n{name}: {post}")
    out = os.path.join(work, name)
    _, native_s = reelkit("ab", "analyze", "--events", post, "--pre-events", pre,
                          "--assignments", assignments, "--control", control,
                          "--experiment", name, "--out", os.path.join(out, "native"))
    native = json.load(open(os.path.join(out, "native", "report.json")))
    tables = {"events": post, "pre_events": pre, "assignments": assignments}
    result = {"dataset": name, "reelkit_native_s": round(native_s, 3)}
    ok = True
    engines = [("duckdb", "ansi", run_duckdb)]
    if spark is not None:
        engines.append((f"spark {spark.version}", "spark", spark.run))
    for engine, dialect, run in engines:
        sql, _ = reelkit("ab", "sql", "--dialect", dialect, "--pre-events-table", "pre_events")
        csv = os.path.join(out, f"{dialect}_sums.csv")
        query_s = run(sql, tables, csv)
        _, stats_s = reelkit("ab", "analyze", "--stats", csv, "--control", control,
                             "--experiment", name, "--out", os.path.join(out, dialect))
        report = json.load(open(os.path.join(out, dialect, "report.json")))
        same, worst = compare(native, report, engine)
        ok &= same
        result[engine] = {"query_s": round(query_s, 3), "analyze_stats_s": round(stats_s, 3),
                          "worst_relative_difference": worst, "equal_to_1e-9": same}
    print("  " + json.dumps(result))
    return ok, result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impressions", type=int, default=5_000_000)
    p.add_argument("--skip-spark", action="store_true")
    p.add_argument("--work", help="keep the files here (default: a temporary directory)")
    a = p.parse_args()
    if not os.path.exists(REELKIT):
        sys.exit("build reelkit first: cargo build --release")
    work = a.work or tempfile.mkdtemp(prefix="reelkit-warehouse-")
    spark = None if a.skip_spark else Spark()
    if spark:
        print(f"Spark {spark.version} (local[2]) started in {spark.startup_s:.1f}s")
    demo = os.path.join(ROOT, "notebooks-output", "demo", "data")
    if not os.path.exists(os.path.join(demo, "events.parquet")):
        reelkit("demo")
    ok = True
    results = []
    for name, data in [
        ("demo", (os.path.join(demo, "pre_events.parquet"), os.path.join(demo, "events.parquet"),
                  os.path.join(demo, "assignments.parquet"), "popular")),
        (f"synthetic_{a.impressions}", synthetic(work, a.impressions)),
    ]:
        same, r = check(name, *data, work, spark)
        ok &= same
        results.append(r)
    with open(os.path.join(work, "warehouse_check.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"\n{'all equal' if ok else 'DIFFERENCES'} (tolerance {TOL:g} relative); files in {work}")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
