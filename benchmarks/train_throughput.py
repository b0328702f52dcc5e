"""Training throughput: the project's training step against a plain PyTorch pre-LN transformer.

Contenders, all with the shape in params.yaml (`model.*`), trained on the same batches with the same
AdamW (same param groups, fused), warmup/cosine schedule, gradient clipping and `train_step`:
- project: the TL-native module under `training_mode` (lean attention forward), as `train_native` runs it;
- tl_as_is: the same module with TransformerLens's own attention forward (for information);
- reference: plain PyTorch (fused QKV, learned positions, pre-LN, final LN, 2-way unembed).
Runs are interleaved round by round (order rotating) on one machine, and the figures are medians
over rounds, so load from other processes hits every side alike.

    .venv/bin/python benchmarks/train_throughput.py [--rounds 9] [--steps 30] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.model.bridge import new_native_model, resolve_device
from palindrome_lens.model.config import model_config
from palindrome_lens.params import ModelParams, load_params_file
from palindrome_lens.stage import prefer_fast_cpu_kernels
from palindrome_lens.training.schedule import warmup_cosine
from palindrome_lens.training.train import make_optimizer, train_step, training_mode

ROOT = Path(__file__).resolve().parents[1]


class RefBlock(nn.Module):
    """Pre-LN block: x + attn(ln1(x)); x + mlp(ln2(x)). Fused QKV, PAD keys masked with -inf."""

    def __init__(self, p: ModelParams) -> None:
        super().__init__()
        self.n_heads, self.d_head, self.attn_only = p.n_heads, p.head_dim, p.attn_only
        inner = p.n_heads * p.head_dim
        norm = nn.LayerNorm if p.normalization == "LN" else (lambda d: nn.Identity())
        self.ln1 = norm(p.d_model)
        self.qkv = nn.Linear(p.d_model, 3 * inner)
        self.out = nn.Linear(inner, p.d_model)
        if not p.attn_only:
            self.ln2 = norm(p.d_model)
            self.fc_in = nn.Linear(p.d_model, p.d_mlp)
            self.fc_out = nn.Linear(p.d_mlp, p.d_model)
            self.act = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu,
                        "gelu_new": lambda x: F.gelu(x, approximate="tanh")}[p.act_fn]

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        batch, pos, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(batch, pos, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        if pad is not None:
            scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
        z = torch.softmax(scores, dim=-1) @ v
        x = x + self.out(z.transpose(1, 2).reshape(batch, pos, -1))
        if not self.attn_only:
            x = x + self.fc_out(self.act(self.fc_in(self.ln2(x))))
        return x


class Reference(nn.Module):
    """Token + learned position embeddings, pre-LN blocks, final LN, 2-way unembed (read at position 0)."""

    def __init__(self, p: ModelParams, d_vocab: int, n_ctx: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(d_vocab, p.d_model)
        self.pos_embed = nn.Embedding(n_ctx, p.d_model)
        self.blocks = nn.ModuleList(RefBlock(p) for _ in range(p.n_layers))
        self.ln_final = nn.LayerNorm(p.d_model) if p.normalization == "LN" else nn.Identity()
        self.unembed = nn.Linear(p.d_model, 2, bias=False)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(tokens) + self.pos_embed.weight[: tokens.shape[1]]
        pad = None if attention_mask is None else ~attention_mask
        for block in self.blocks:
            x = block(x, pad)
        return self.unembed(self.ln_final(x))


def batches(tokenizer: Tokenizer, lengths: list[int], batch_size: int, n: int, seed: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    texts = ["".join(rng.choice(list(tokenizer.alphabet), int(rng.choice(lengths)))) for _ in range(batch_size * n)]
    return list(tokenizer.encode(texts).split(batch_size))


def main() -> None:
    prefer_fast_cpu_kernels()  # as the train stage runs
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per model per round")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default=None, help="default: device from params")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params_file(args.params)
    device = resolve_device(args.device or params.device)
    tokenizer = Tokenizer(params.data.alphabet, max(params.data.lengths), params.tokenize.add_eos)
    config = model_config(params.model, tokenizer, params.seed, list(params.data.lengths))
    tp = params.train
    data = [b.to(device) for b in batches(tokenizer, list(params.data.lengths), tp.batch_size, args.steps, params.seed)]
    labels = [torch.randint(0, 2, (tp.batch_size,), generator=torch.Generator().manual_seed(i)).to(device)
              for i in range(args.steps)]
    padded = any(bool((b == tokenizer.pad_id).any()) for b in data)
    masks = [(b != tokenizer.pad_id) if padded else None for b in data]

    torch.manual_seed(params.seed)
    models = {
        "project": new_native_model(config).to(device),
        "tl_as_is": new_native_model(config).to(device),
        "reference": Reference(params.model, config["d_vocab"], config["n_ctx"]).to(device),
    }
    total = args.rounds * args.steps + args.steps
    state = {}
    for name, model in models.items():
        optimizer = make_optimizer(model, tp.lr, tp.weight_decay)
        state[name] = (model, optimizer, warmup_cosine(optimizer, total, tp.warmup_fraction))
    n_params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}

    def run(name: str) -> float:
        model, optimizer, scheduler = state[name]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with training_mode(model) if name == "project" else contextlib.nullcontext():
            for tokens, y, mask in zip(data, labels, masks):
                loss, _ = train_step(model, optimizer, tokens, y, mask, tp.grad_clip)
                scheduler.step()
            loss.item()  # wait for the device
        return tp.batch_size * args.steps / (time.perf_counter() - start)

    for name in models:  # warm-up
        run(name)
    speeds: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            speeds[name].append(run(name))
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {tp.batch_size}, padded {padded}, "
          f"{args.rounds} rounds x {args.steps} steps, parameters {n_params}")
    for name in models:
        print(f"{name:>9}: {statistics.median(speeds[name]):9.0f} examples/s (median; "
              f"min {min(speeds[name]):.0f}, max {max(speeds[name]):.0f})")
    for name in ("project", "tl_as_is"):
        ratios = [p / q for p, q in zip(speeds[name], speeds["reference"])]
        print(f"ratio {name}/reference: {statistics.median(ratios):.3f} (median of per-round ratios; ratio of "
              f"medians {statistics.median(speeds[name]) / statistics.median(speeds['reference']):.3f})")


if __name__ == "__main__":
    main()
