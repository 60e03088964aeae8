"""``make fuzz``: hundreds of damaged model files through ``load``, and a sample through ``xlate`` itself.

    python scripts/fuzz.py [--seed 1] [--per-seed 36] [--swaps 40] [--cli 30] [--jobs 2] [--keep DIR]

Builds one small valid file per input format (tests/fuzzcorpus.py), writes ``--per-seed`` damaged
copies of each plus ``--swaps`` files of one format under another's name, loads them all in one
process per batch (tests/fuzz_batch.py: a file that does not answer within 30 s is a hang, the
worker restarts after it), and runs ``--cli`` of them through the real executable (tf2torch,
torch2tf, check, inspect; tests/fuzz_cli.py). Prints the counts per format and exits 1 on any
hang, crash, foreign exception, traceback or file left behind.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzz_batch import run_batch
from tests.fuzz_cli import listing, problems, run_case
from tests.fuzzcorpus import SEEDS, build_seeds, damaged, manifest

CLEAN = ("ok", "error")


def _batch(items, seeds: Path, out: Path) -> list[dict]:
    (out / "manifest.jsonl").write_text(manifest(items))
    return run_batch(out / "manifest.jsonl", len(items), cwd=seeds, per_file_s=30)


def _unclean(result: dict) -> bool:
    return result["outcome"] not in CLEAN or (result["outcome"] == "error" and (result["code"], result["lines"]) != (2, 1))


def _print_load_table(items, results) -> int:
    rows = collections.defaultdict(collections.Counter)
    slowest = collections.defaultdict(float)
    for item, r in zip(items, results):
        rows[item.seed.name][r["outcome"]] += 1
        if not r.get("first"):
            slowest[item.seed.name] = max(slowest[item.seed.name], r.get("seconds", 0.0))
    imports = [r["seconds"] for r in results if r.get("first")]
    print(f"\nthrough load ({len(items)} damaged files in one process; max s leaves out each format's first file, "
          f"whose time includes importing its framework: at most {max(imports):.1f} s)")
    print(f"{'format':18s} {'files':>5s} {'loaded':>6s} {'exit 2':>6s} {'hang':>4s} {'died':>4s} {'memory':>6s} "
          f"{'foreign':>7s} {'max s':>6s}")
    for name in [s.name for s in SEEDS]:
        c = rows[name]
        print(f"{name:18s} {sum(c.values()):5d} {c['ok']:6d} {c['error']:6d} {c['hang']:4d} {c['died']:4d} "
              f"{c['memory']:6d} {c['foreign']:7d} {slowest[name]:6.2f}")
    total = collections.Counter(r["outcome"] for r in results)
    print(f"{'all':18s} {len(items):5d} {total['ok']:6d} {total['error']:6d} {total['hang']:4d} {total['died']:4d} "
          f"{total['memory']:6d} {total['foreign']:7d} {max(slowest.values()):6.2f}")
    bad = [(i, r) for i, r in zip(items, results) if _unclean(r)]
    for item, r in bad:
        print(f"  UNCLEAN {item.path.name} ({item.how}): {r}")
    return len(bad)


def _cli_sample(items, count: int):
    """Round-robin over the formats the CLI reads, so each gets its share of the sample."""
    by_seed = collections.defaultdict(list)
    for item in items:
        if item.seed.cli:
            by_seed[item.seed.name].append(item)
    picked, round_ = [], 0
    while len(picked) < count and any(len(v) > round_ for v in by_seed.values()):
        picked += [v[round_] for v in by_seed.values() if len(v) > round_]
        round_ += 1
    return picked[:count]


def _run_cli(sample, seeds: Path, work: Path, jobs: int) -> int:
    def one(index_item):
        index, item = index_item
        return item, run_case(item, seeds, work / str(index), variant=index, timeout=300)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = list(pool.map(one, enumerate(sample)))
    print(f"\nthrough the xlate executable ({len(runs)} damaged files)")
    codes = collections.defaultdict(collections.Counter)
    bad = 0
    for item, result in runs:
        codes[result.argv[0]][result.code] += 1
        found = problems(result)
        tag = "BAD " if found else "    "
        bad += bool(found)
        print(f"{tag}{result.code!s:>4} {result.seconds:6.1f} s  {' '.join(result.argv)[:60]:60s} {item.how[:28]:28s} "
              f"{result.error[:140]}" + (f"  <- {found}" if found else ""))
        for line in result.other_lines[:3]:
            print(f"         stderr: {line[:160]}")
    for command, counter in sorted(codes.items()):
        print(f"  {command:9s} exit codes: {dict(sorted(counter.items(), key=str))}")
    tracebacks = sum(r.traceback for _, r in runs)
    left = sum(bool(r.after - r.before) and r.code != 0 for _, r in runs)
    hangs = sum(r.code is None for _, r in runs)
    other = sum(len(r.other_lines) for _, r in runs)
    print(f"  hangs {hangs}, tracebacks {tracebacks}, runs that left files behind {left}, stderr lines other than "
          f"xlate's and TensorFlow's start-up chatter {other}, max {max(r.seconds for _, r in runs):.1f} s")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-seed", type=int, default=36)
    parser.add_argument("--swaps", type=int, default=40)
    parser.add_argument("--cli", type=int, default=30, help="how many of the damaged files also go through xlate")
    parser.add_argument("--jobs", type=int, default=2, help="xlate processes at a time")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="xlate-fuzz-") as tmp:
        work = args.keep or Path(tmp)
        start = time.perf_counter()
        seeds = build_seeds(work / "seeds")
        items = damaged(seeds, work / "damaged", seed=args.seed, per_seed=args.per_seed, swaps=args.swaps)
        before = listing(seeds) | {f"damaged/{n}" for n in listing(work / "damaged")}
        results = _batch(items, seeds, work / "damaged")
        after = listing(seeds) | {f"damaged/{n}" for n in listing(work / "damaged")}
        unclean = _print_load_table(items, results)
        written = sorted(after - before - {"damaged/manifest.jsonl"})
        print(f"files written by the loads: {len(written)} {written[:5]}")
        bad_cli = _run_cli(_cli_sample(items, args.cli), seeds, work / "cli", args.jobs) if args.cli else 0
        print(f"\n{len(items)} damaged files through load, {min(args.cli, len(items))} through xlate, "
              f"in {time.perf_counter() - start:.0f} s: {unclean} unclean loads, {bad_cli} bad CLI runs, "
              f"{len(written)} files written")
        return 1 if unclean or bad_cli or written else 0


if __name__ == "__main__":
    sys.exit(main())
