#!/usr/bin/python3
"""A character language model on real text, Unfold against PyTorch in the same run (issue #16).

Both train the same model the same way, one thread each: embedding -> stacked LSTM -> linear head
over the characters of the text plus Unfold's three special tokens, PyTorch's default
initialisations, Adam with a cosine schedule to lr/20, the global gradient norm clipped to 1, B
parallel streams over the first 90% of the text in chunks of T characters with the state carried
between chunks (stateful truncated BPTT) and reset at each epoch. Both score the last 10% after
every epoch the same way: 16 streams, chunks of 64, state carried, bits per character over every
scored character.

For each seed, both start from the same parameters, Unfold's initialisation with that seed (a
model's BPC after a few epochs varies with its initial draw by more than the frameworks differ),
and three runs follow:
  1. Unfold, `unfold train --text`, for E epochs (its wall time U and its held-out BPC);
  2. PyTorch for the same steps (time P): the time ratio U / P at equal steps;
  3. PyTorch for the steps that fit in U at its own measured speed, its schedule fitted to them:
     the BPC at equal time.
Times run from reading the text to the last held-out evaluation on both sides (Unfold's also
include writing its checkpoints). Writes a Markdown table to
stdout (and --json FILE). Run by scripts/bench --char-lm.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import struct

import torch


def read_text(path):
    with open(path, encoding="utf-8") as f:
        chars = list(f.read())
    vocab = ["<pad>", "<s>", "</s>"] + sorted(set(chars))
    ids = {c: i for i, c in enumerate(vocab)}
    data = [ids[c] for c in chars]
    split = len(data) * 9 // 10
    return vocab, torch.tensor(data[:split]), torch.tensor(data[split:])


def stream_chunks(text, batch, steps):
    """The chunks of Unfold's text_stream: stream b is text[b*L : (b+1)*L], L = |text| // batch."""
    length = len(text) // batch
    streams = text[: batch * length].view(batch, length)
    for k in range((length - 1) // steps):
        x = streams[:, k * steps : (k + 1) * steps]
        y = streams[:, k * steps + 1 : (k + 1) * steps + 1]
        yield x.t().contiguous(), y.t().contiguous()  # (T, B), time-major as in Unfold


class CharLM(torch.nn.Module):
    def __init__(self, vocab, embed, hidden, layers):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.rnn = torch.nn.LSTM(embed, hidden, layers)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def held_out_bpc(model, valid):
    streams = max(1, min(16, len(valid) // 200))
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in stream_chunks(valid, streams, 64):
            logits, state = model(x, state)
            total += torch.nn.functional.cross_entropy(
                logits.view(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            count += y.numel()
    return total / count / math.log(2)


def load_safetensors(path):
    """The tensors of a float32 safetensors file, by name."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        assert entry["dtype"] == "F32", entry
        begin, end = entry["data_offsets"]
        raw = bytearray(data[8 + n + begin : 8 + n + end])
        out[name] = torch.frombuffer(raw, dtype=torch.float32).view(entry["shape"]).clone()
    return out


def train_torch(args, total_steps, initial):
    # Timed from reading the text, as Unfold's log times its run from its start.
    start = time.perf_counter()
    vocab, train, valid = read_text(args.text)
    model = CharLM(len(vocab), args.embed, args.hidden, args.layers)
    # A training checkpoint: the model's tensors are those without a '/' in their names.
    model.load_state_dict({k: v for k, v in initial.items() if "/" not in k})
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = (len(train) // args.batch - 1) // args.tbptt
    lr_min = args.lr / 20
    step, bpc = 0, []
    while step < total_steps:
        state = None
        for x, y in stream_chunks(train, args.batch, args.tbptt):
            if step == total_steps:
                break
            for group in opt.param_groups:
                group["lr"] = lr_min + (args.lr - lr_min) * (
                    1 + math.cos(math.pi * step / total_steps)
                ) / 2
            logits, state = model(x, state)
            state = tuple(s.detach() for s in state)
            loss = torch.nn.functional.cross_entropy(logits.view(-1, len(vocab)), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
        if step % steps_per_epoch == 0 or step == total_steps:
            bpc.append(held_out_bpc(model, valid))
    return time.perf_counter() - start, bpc


def unfold_command(args, text_path, seed):
    return [args.unfold, "train", "--text", text_path, "--cell", "lstm",
            "--layers", str(args.layers), "--hidden", str(args.hidden), "--embed", str(args.embed),
            "--tbptt", str(args.tbptt), "--batch", str(args.batch), "--seed", str(seed),
            "--threads", "1", "--samples", "0", "--quiet", "--force"]


def unfold_initial(args, text_path, workdir, seed):
    """Unfold's initial parameters at `seed`: one SGD step at lr 1e-30, which moves no float."""
    ckpt = os.path.join(workdir, "init.safetensors")
    cmd = unfold_command(args, text_path, seed) + [
        "--epochs", "1", "--steps", "1", "--optimizer", "sgd", "--lr", "1e-30",
        "--checkpoint", ckpt]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return load_safetensors(ckpt)


def train_unfold(args, text_path, workdir, seed):
    ckpt = os.path.join(workdir, "lm.safetensors")
    log = os.path.join(workdir, "lm.jsonl")
    cmd = unfold_command(args, text_path, seed) + [
        "--epochs", str(args.epochs), "--lr", str(args.lr), "--checkpoint", ckpt, "--log", log]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in open(log)]
    epochs = [r for r in records if "held_out" in r]
    return epochs[-1]["seconds"], [r["held_out"]["bits_per_char"] for r in epochs], records[-1]["step"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--unfold", required=True, help="the unfold program")
    p.add_argument("--text", required=True, help="UTF-8 text file")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--tbptt", type=int, default=50)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seeds", default="1,2,3", help="initialisations to compare, e.g. 1,2,3")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)

    vocab, train, valid = read_text(args.text)
    seeds = [int(x) for x in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as workdir:
            initial = unfold_initial(args, args.text, workdir, seed)
            u_time, u_bpc, steps = train_unfold(args, args.text, workdir, seed)
        p_time, p_bpc = train_torch(args, steps, initial)
        budget = max(1, int(steps * u_time / p_time))
        b_time, b_bpc = train_torch(args, budget, initial)
        runs.append({"seed": seed, "steps": steps,
                     "unfold": {"seconds": u_time, "bpc": u_bpc},
                     "pytorch_equal_steps": {"seconds": p_time, "bpc": p_bpc},
                     "pytorch_equal_time": {"steps": budget, "seconds": b_time, "bpc": b_bpc}})
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    model = f"LSTM {args.layers} x {args.hidden}, embed {args.embed}"
    print(f"character LM on {args.text}: {len(train) + len(valid)} characters ({len(train)} "
          f"trained on, {len(valid)} held out), {len(vocab)} symbols; {model}, batch "
          f"{args.batch} x {args.tbptt} characters, {args.epochs} epoch(s), Adam lr {args.lr} "
          f"(cosine), one thread each, the same initial parameters per seed\n")
    print("| seed | run | steps | seconds | held-out bits/char per epoch |")
    print("|---|---|---|---|---|")
    fmt = lambda b: ", ".join(f"{x:.3f}" for x in b)
    for r in runs:
        u, p_, b = r["unfold"], r["pytorch_equal_steps"], r["pytorch_equal_time"]
        print(f"| {r['seed']} | Unfold | {r['steps']} | {u['seconds']:.1f} | {fmt(u['bpc'])} |")
        print(f"| {r['seed']} | PyTorch, equal steps | {r['steps']} | {p_['seconds']:.1f} | "
              f"{fmt(p_['bpc'])} |")
        print(f"| {r['seed']} | PyTorch, Unfold's time | {b['steps']} | {b['seconds']:.1f} | "
              f"{fmt(b['bpc'])} |")
    mean = lambda xs: sum(xs) / len(xs)
    ratio = mean([r["unfold"]["seconds"] / r["pytorch_equal_steps"]["seconds"] for r in runs])
    u_final = mean([r["unfold"]["bpc"][-1] for r in runs])
    p_final = mean([r["pytorch_equal_steps"]["bpc"][-1] for r in runs])
    b_final = mean([r["pytorch_equal_time"]["bpc"][-1] for r in runs])
    print(f"\nmean over seeds: Unfold / PyTorch time at equal steps {ratio:.2f} (target <= 0.6); "
          f"final bits/char: Unfold {u_final:.3f}, PyTorch at equal steps {p_final:.3f}, "
          f"PyTorch at equal time {b_final:.3f} (target: Unfold no worse)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"text": args.text, "model": model, "batch": args.batch,
                       "tbptt": args.tbptt, "runs": runs, "time_ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
