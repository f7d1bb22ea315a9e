#!/usr/bin/python3
"""Data-parallel training throughput, Unfold on MPI against PyTorch's DistributedDataParallel
(Gloo), in one run: for each config, one process and two, each process on one BLAS thread, the
four runs alternated over --rounds rounds (Note [Data parallelism] in framework/data_parallel.hpp).

Unfold: mpiexec -n N BUILD/bench/data_parallel_bench (bench/data_parallel.cpp); PyTorch:
bench/data_parallel_torch.py. Each rank trains on its own batch of the config's B sequences
(weak scaling; --split: B / N of one global batch each). Prints the medians of sequences per
second and the ratios: Unfold 2 processes / 1, PyTorch 2 / 1, and Unfold 2 / PyTorch DDP 2.

    /usr/bin/python3 bench/data_parallel.py --bench build-bench/bench/data_parallel_bench
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(command):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no result from {' '.join(command)}:\n{out.stdout}\n{out.stderr}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bench", required=True, help="the data_parallel_bench program")
    p.add_argument("--configs", default="medium,large")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=0, help="timed steps per run (0: the config's)")
    p.add_argument("--split", action="store_true", help="one global batch split over the ranks")
    p.add_argument("--bucket-bytes", type=int, default=0, help="Unfold's and DDP's bucket size")
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args()
    mpiexec = shutil.which("mpiexec") or "mpiexec"
    common = ["--layers", str(args.layers)] + (["--split"] if args.split else [])
    if args.reps:
        common += ["--reps", str(args.reps)]

    def unfold(config, n):
        extra = ["--bucket-bytes", str(args.bucket_bytes)] if args.bucket_bytes else []
        return [mpiexec, "-n", str(n), "--allow-run-as-root", "--oversubscribe", "--bind-to",
                "none", args.bench, "--config", config] + common + extra

    def torch(config, n):
        extra = ["--bucket-mb", str(args.bucket_bytes / 2**20)] if args.bucket_bytes else []
        return ["/usr/bin/python3", os.path.join(HERE, "data_parallel_torch.py"), "--config",
                config, "--ranks", str(n)] + common + extra

    runs = [("Unfold", 1, unfold), ("Unfold", 2, unfold)]
    if not args.no_torch:
        runs += [("PyTorch", 1, torch), ("PyTorch", 2, torch)]
    configs = args.configs.split(",")
    results = {}  # (config, impl, ranks) -> [result]
    print(f"one BLAS thread per process; {args.rounds} rounds, the runs alternated; "
          f"{'one global batch split' if args.split else 'each rank its own batch of B'}; "
          f"{args.layers} layer(s); load average {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(args.rounds):
        order = runs if r % 2 == 0 else list(reversed(runs))
        for config in configs:
            for impl, n, command in order:
                res = run_json(command(config, n))
                results.setdefault((config, impl, n), []).append(res)
                print(f"  round {r + 1} {config:6s} {impl:7s} {n} process(es): "
                      f"{res['sequences_per_second']:8.1f} sequences/s "
                      f"({res['seconds_per_step'] * 1e3:.1f} ms a step)", flush=True)

    def rate(config, impl, n):
        return statistics.median(x["sequences_per_second"] for x in results[(config, impl, n)])

    print()
    header = "| config | Unfold 1 | Unfold 2 | Unfold 2/1 |"
    if not args.no_torch:
        header += " PyTorch 1 | PyTorch DDP 2 | PyTorch 2/1 | Unfold 2 / DDP 2 |"
    print(header + " all-reduced per step |")
    print("|" + "---|" * (header.count("|") - 1 + 1))
    for config in configs:
        u1, u2 = rate(config, "Unfold", 1), rate(config, "Unfold", 2)
        row = f"| {config} | {u1:.1f} | {u2:.1f} | {u2 / u1:.2f} |"
        if not args.no_torch:
            t1, t2 = rate(config, "PyTorch", 1), rate(config, "PyTorch", 2)
            row += f" {t1:.1f} | {t2:.1f} | {t2 / t1:.2f} | {u2 / t2:.2f} |"
        last = results[(config, "Unfold", 2)]
        overlap = statistics.median(x["first_bucket_overlap_ms"] for x in last)
        exposed = statistics.median(x["exposed_ms"] for x in last)
        row += (f" {last[-1]['allreduced_bytes'] / 1e6:.2f} MB in {last[-1]['buckets']} "
                f"bucket(s), the first started {overlap:.1f} ms before backward's end, "
                f"{exposed:.1f} ms not hidden |")
        print(row)
    print("(sequences per second, medians; each row's runs alternated in the same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
