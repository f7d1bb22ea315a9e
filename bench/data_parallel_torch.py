"""PyTorch's side of bench/data_parallel.py: torch.nn.LSTM trained as bench/data_parallel.cpp
trains Unfold's (forward, backward of the outputs' mean, SGD), on N processes with
DistributedDataParallel over Gloo (N = 1: the plain module, no DDP), one thread per process.
Rank 0 prints one JSON line with the same fields. Run with Debian's /usr/bin/python3."""

import argparse
import json
import os
import socket
import statistics
import time

# Thread pools read these when torch loads, so they must be set before the import.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = "1"

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

CONFIGS = {  # bench/bench_util.hpp: name -> (B, T, I, H, reps)
    "tiny": (1, 100, 16, 32, 41),
    "small": (16, 50, 64, 128, 21),
    "medium": (32, 35, 256, 256, 15),
    "large": (64, 100, 512, 512, 5),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(rank, args, port):
    torch.set_num_threads(1)
    B, T, I, H, reps = CONFIGS[args.config]
    reps = args.reps or 2 * reps
    if args.split:
        B //= args.ranks
    if args.ranks > 1:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    torch.manual_seed(1)
    model = torch.nn.LSTM(I, H, args.layers)
    if args.ranks > 1:
        # bucket_cap_mb as in Unfold's run when given (DDP's default is 25 MB)
        kwargs = {"bucket_cap_mb": args.bucket_mb} if args.bucket_mb else {}
        model = torch.nn.parallel.DistributedDataParallel(model, **kwargs)
    torch.manual_seed(100 + rank)
    x = torch.rand(T, B, I) * 2 - 1
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        out, _ = model(x)
        out.mean().backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    seconds = []
    for _ in range(reps):
        if args.ranks > 1:
            dist.barrier()
        start = time.perf_counter()
        step()
        if args.ranks > 1:
            dist.barrier()
        seconds.append(time.perf_counter() - start)
    if rank == 0:
        s = statistics.median(seconds)
        params = sum(p.numel() for p in model.parameters())
        print(json.dumps({"impl": "torch", "config": args.config, "layers": args.layers,
                          "ranks": args.ranks, "batch_per_rank": B, "seconds_per_step": s,
                          "sequences_per_second": B * args.ranks / s,
                          "allreduced_bytes": params * 4}), flush=True)
    if args.ranks > 1:
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="medium", choices=sorted(CONFIGS))
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--reps", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bucket-mb", type=float, default=0)
    p.add_argument("--split", action="store_true")
    args = p.parse_args()
    if args.ranks == 1:
        run(0, args, 0)
    else:
        mp.spawn(run, args=(args, free_port()), nprocs=args.ranks, join=True)


if __name__ == "__main__":
    main()
