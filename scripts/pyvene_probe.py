"""Does pyvene (the field's library for interchange interventions) drive a TransformerBridge's hook points?

Measures it on data/model, the way the README measured TransformerLens' edge tools: for each hook point it
builds a pyvene VanillaIntervention at two positions and compares the logits with the project's own patching
(a TransformerLens hook that copies the source run's activation), first on the bridge as it is, then with each
workaround pyvene needs added in turn. pyvene is not a dependency of the project (the explain stage does not
use it); install it to run this: `pip install pyvene==0.1.8`.

    .venv/bin/python scripts/pyvene_probe.py [--model data/model]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from palindrome_lens.model.classifier import load_classifier

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ("blocks.0.hook_mlp_out", "blocks.0.hook_resid_post", "blocks.0.attn.hook_z")
STEPS = ("as it is", "+ model.config", "+ an intervention built by hand (pyvene's type registry skipped)",
         "+ model.device")


def manual(model: torch.nn.Module, base: torch.Tensor, source: torch.Tensor, hook: str, positions: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        _, cache = model.run_with_cache(source, names_filter=lambda name: name == hook)

        def patch(x: torch.Tensor, hook: object) -> torch.Tensor:
            out = x.clone()
            out[:, positions] = cache[hook_name][:, positions]
            return out

        hook_name = hook
        return model.run_with_hooks(base, fwd_hooks=[(hook, patch)])[:, 0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "data" / "model"))
    args = parser.parse_args()
    try:
        import pyvene as pv
    except ImportError:
        print("pyvene is not installed: pip install pyvene==0.1.8", file=sys.stderr)
        return 2
    clf = load_classifier(args.model)
    model = clf.model.eval()
    length = clf.lengths[0]
    rng = np.random.default_rng(0)  # eight random (base, source) pairs: pyvene reads a (batch, position, dim) layout
    letters = np.array(list(clf.tokenizer.alphabet))
    texts = ["".join(row) for row in letters[rng.integers(0, len(letters), size=(16, length))]]
    base, source = clf.encode(texts[:8]), clf.encode(texts[8:])
    positions = [length // 2, length // 2 + 1]
    for step, label in enumerate(STEPS):
        if step >= 1:
            model.config = model.cfg
        if step >= 3:
            model.device = next(model.parameters()).device
        print(f"{label}:")
        for hook in HOOKS:
            component = hook.replace("blocks.0", "blocks[0]") + ".output"
            width = model.cfg.d_head if hook.endswith("hook_z") else model.cfg.d_model
            try:
                extra = {"intervention": pv.VanillaIntervention(embed_dim=width)} if step >= 2 else {}
                rep = pv.RepresentationConfig(0, component, "pos", len(positions), **extra)
                intervenable = pv.IntervenableModel(
                    pv.IntervenableConfig(representations=[rep], intervention_types=pv.VanillaIntervention), model)
                locations = [[positions] * len(base)]
                _, out = intervenable({"input": base}, [{"input": source}],
                                      unit_locations={"sources->base": (locations, locations)})
                gap = float((out[:, 0] - manual(model, base, source, hook, positions)).abs().max())
                print(f"  {hook}: ran; max |pyvene - own patching| = {gap:.3g}")
            except Exception as exc:  # noqa: BLE001 - we report whatever pyvene raises
                print(f"  {hook}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
