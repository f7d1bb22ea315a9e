#!/usr/bin/python3
"""PyTorch peer of the memory-planned BPTT benchmark: peak memory and time of one LSTM training step.

One torch.nn.LSTM(I, H) over x of shape (T, B, I), zero initial state, loss = sum of all outputs;
a step is zero grads, forward, backward (no optimizer). --mode plain keeps every step's
activations for backward; --mode checkpoint runs the time axis in segments of --segment steps
under torch.utils.checkpoint, keeping only the state between segments and recomputing each
segment's activations during backward.

With --embedded the input is an nn.Embedding(256, I) of (T, B) tokens, looked up inside the
step (and, under checkpoint, inside each segment), as Unfold's benchmark feeds it by chunks.

Memory is the process's peak RSS (ru_maxrss, a high-water mark) minus its RSS just before the
warm-up step. Prints one JSON line on stdout; everything else goes to stderr.

    /usr/bin/python3 bench/bptt_memory_torch.py --mode checkpoint --T 1000 --B 32 --I 256 --H 256
"""
import argparse
import inspect
import json
import math
import os
import resource
import statistics
import sys
import time

# Thread pools read these when torch loads, so they must be set before the import.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = "1"

import torch  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

# use_reentrant appeared in torch 1.11; before that checkpoint is always reentrant.
HAS_USE_REENTRANT = "use_reentrant" in inspect.signature(checkpoint).parameters


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def rss_bytes():
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def loss_plain(lstm, x, embed):
    out, _ = lstm(embed(x) if embed is not None else x)
    return out.sum()


def loss_checkpoint(lstm, x, segment, embed):
    B, H = x.shape[1], lstm.hidden_size

    def run_segment(x_seg, h, c):
        out, (h, c) = lstm(embed(x_seg) if embed is not None else x_seg, (h, c))
        return out, h, c

    h = torch.zeros(1, B, H)
    c = torch.zeros(1, B, H)
    if not HAS_USE_REENTRANT:
        # A reentrant checkpoint whose inputs all lack requires_grad returns outputs that
        # lack it too, so the parameters would get no gradient. The state is tiny; x is not.
        h.requires_grad_()
        c.requires_grad_()
    loss = 0.0
    for t0 in range(0, x.shape[0], segment):
        kwargs = {"use_reentrant": False} if HAS_USE_REENTRANT else {}
        out, h, c = checkpoint(run_segment, x[t0:t0 + segment], h, c, **kwargs)
        # Summing per segment, not concatenating, lets each segment's output be freed now.
        loss = loss + out.sum()
    return loss


VOCAB = 256


def make_problem(T, B, I, H, seed, embedded=False):
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(I, H)
    if embedded:
        return lstm, torch.randint(0, VOCAB, (T, B)), torch.nn.Embedding(VOCAB, I)
    return lstm, torch.empty(T, B, I).uniform_(-1.0, 1.0), None


def train_step(lstm, x, mode, segment, embed=None):
    lstm.zero_grad(set_to_none=True)
    if embed is not None:
        embed.zero_grad(set_to_none=True)
    loss = (loss_plain(lstm, x, embed) if mode == "plain"
            else loss_checkpoint(lstm, x, segment, embed))
    loss.backward()
    return loss.item()


def verify_checkpoint():
    """Checkpointed gradients must equal plain ones; a segment that doesn't divide T included."""
    for embedded in (False, True):
        lstm, x, embed = make_problem(T=23, B=3, I=5, H=7, seed=1, embedded=embedded)
        named = list(lstm.named_parameters()) + (
            list(embed.named_parameters(prefix="embed")) if embed is not None else [])
        grads = {}
        for mode in ("plain", "checkpoint"):
            train_step(lstm, x, mode, 5, embed)
            grads[mode] = [p.grad.clone() for _, p in named]
        for (name, _), gp, gc in zip(named, grads["plain"], grads["checkpoint"]):
            rel = ((gc - gp).norm() / gp.norm().clamp_min(1e-30)).item()
            if not rel <= 1e-4:
                log(f"FAIL: checkpoint gradient of {name} differs from plain by {rel:.3g}")
                sys.exit(1)
    log("verify: checkpoint gradients match plain (rel <= 1e-4)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("plain", "checkpoint"), default="plain")
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--I", type=int, default=256)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--segment", type=int, default=None, help="default round(sqrt(T))")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embedded", action="store_true", help="the input: embedded tokens")
    args = ap.parse_args()
    segment = args.segment if args.segment is not None else max(1, round(math.sqrt(args.T)))
    if segment < 1 or args.steps < 1:
        ap.error("--segment and --steps must be at least 1")

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    # Tiny, so it moves neither the base nor the peak measured below.
    verify_checkpoint()

    lstm, x, embed = make_problem(args.T, args.B, args.I, args.H, args.seed, args.embedded)
    base = rss_bytes()
    train_step(lstm, x, args.mode, segment, embed)  # warm-up: allocator, kernels' first use
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = train_step(lstm, x, args.mode, segment, embed)
        times.append((time.perf_counter() - t) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    log(f"loss {loss:.6g}, ms per step {[round(t, 1) for t in times]}")

    print(json.dumps({
        "peer": "torch", "mode": args.mode, "embedded": args.embedded,
        "T": args.T, "B": args.B, "I": args.I, "H": args.H,
        # Reported for plain too, so rows line up; plain ignores it.
        "segment": segment, "steps": args.steps,
        "ms_per_step_median": round(statistics.median(times), 3),
        "ms_per_step_all": [round(t, 3) for t in times],
        "base_rss_bytes": base,
        "peak_rss_above_start_bytes": peak - base,
        "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
