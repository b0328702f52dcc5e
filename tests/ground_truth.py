"""A palindrome classifier built by hand, whose circuit is known by construction, with loud but causally
inert decoys (test material; no tests here).

Strings of length 8 over `abcd`, tokens [BOS] c1..c8 [EOS], no LayerNorm, read at BOS. Residual
stream (d_model 32), one job per subspace:

    TOK 0-3   own letter (embedding)          POS 8-17   position one-hot (pos_embed)
    MIR 4-7   mirror letter (L0H0)            FLAG 18    "my pair does not match" (0_mlp_out)
    DEC 19-22 mirror letter x10 (L0H1, decoy) BOSD 23    is-BOS (embedding)
    LOGIT 24  what the unembedding reads      AGG 25     share of mismatched characters (L1H0)
    DEC2 26-29 MLP 1's decoy output            EOSD 30    is-EOS (embedding)

The circuit (planted):
- L0H0@chars: position i attends to its mirror 9-i (positional QK) and copies its letter into MIR;
- 0_mlp_out@chars: ReLU(TOK_k - MIR_k) summed over letters = 1 exactly when the pair differs -> FLAG;
- L1H0@bos: attends evenly to the eight characters, reads FLAG (V) and writes -16 x mean flag to LOGIT
  (and the mean flag to AGG).
Logit difference = 2 for a palindrome, 2 - 4 = -2 for one broken pair, -6 for two, ...

The decoys (never read by anything that reaches the logits):
- L0H1: a second, perfect mirror head (mirror score 1) writing its letter x10 into DEC, which nobody reads;
- L1H1: attends from BOS to BOS and adds a constant +5 to LOGIT, cancelled by the unembedding bias.
  Zero ablation makes it look essential; resample or mean ablation shows it carries nothing;
- 1_mlp_out: reads AGG (it varies with the string) and writes large vectors into DEC2, which nobody reads.

Information-carrying edges on a clean palindrome -> one-pair corruption (path patching effect):
embed@chars -> L0H0@chars (v) 0.5, embed@chars -> 0_mlp_out@chars (mlp_in) 0.5,
L0H0@chars -> 0_mlp_out@chars (mlp_in) 0.5, 0_mlp_out@chars -> L1H0@bos (v) 1, L1H0@bos -> logits 1.
Every other edge is 0 (a broken pair raises two flags; restoring one of them halves the drop).

The lopsided variant (`planted_classifier(tokenizer, lopsided=True)`; the explain tests' known answer) is the
same circuit with two asymmetries, so that a table read at the wrong position, or with a pair's two characters
the wrong way round, comes out different:
- L1H0's key at character position p (1..8) is KEY[p] = 1 + 0.02 (p - 1) instead of 1: its attention score
  from BOS is 20 KEY[p] (BOS and EOS score 0), so it attends more to the later characters (2.1% to position
  1, 34.4% to position 8);
- MLP 0 writes FLAG with a strength set by the position's own letter, STRENGTH[a] = 1, 1.5, 2, 2.5 for a, b,
  c, d (0 when the pair matches), so the two positions of a broken pair raise different flags.
Its logit difference is 2 - 16 x sum_p attention(p) x flag(p): 2 for a palindrome, below 0 for any other
string (at least 16 x 17.3% x 1 for the lightest pair, positions 4 and 5). L1H0's salience at position p is
exactly 20 KEY[p] and its evidence for (own a, mirror b) is STRENGTH[a] x |(-16, 1)| = STRENGTH[a] x 257^0.5
when a != b, 0 when a == b. Its components, decoys and information-carrying edges are those above; the edges'
effects (EDGES) and the logit differences of broken strings are not.

The counting variant (`planted_classifier(tokenizer, counting=True)`; the failure search's known answer) makes
errors that depend on context. Its decoy L0H1 becomes a context head: at BOS (the readout position) it attends
evenly to the eight characters (score 20, BOS and EOS 0), reads "is the letter d" (V) and writes COUNT_WEIGHT =
32/9 x the share of d's into LOGIT (elsewhere its query is 0 and what it writes to LOGIT is never read). With
n_d the number of d's and f the mean flag (2 x the number of broken pairs / 8):

    logit difference = 2 - 16 f + (32/9) n_d / 8 = 2 - 16 f + 4 n_d / 9
    palindrome (f = 0):          2 + 4 n_d / 9 >= 2                         right
    one broken pair (f = 1/4):  -2 + 4 n_d / 9 > 0  iff  n_d >= 5 (n_d = 4: -2/9, n_d = 5: +2/9)
    two or more broken pairs:   -6 + 4 n_d / 9 <= -6 + 24/9 < 0 (each broken pair holds a non-d)   right

So the model's only errors are strings with exactly one broken pair and at least five d's, all called
palindromes. Among the single edits of the 256 palindromes of length 8 (each edit breaks exactly one pair):
five or more d's needs the three matched pairs all dd (48 strings: 4 pairs x 12 ordered broken pairs) or two of
them dd, the third xx (x in abc) and a d in the broken pair (216: 4 x 3 x 3 x 6), 264 distinct strings, each
the edit of two palindromes, so 528 of the 6144 edits (8.6%). A program that cannot see the count of d's cannot
tell them from the other 2808 one-broken-pair strings. Its decoys are L1H1 and 1_mlp_out (DEC stays empty).
It counts d, the last letter, because a context-blind program scores every one-broken-pair string alike and the
failure search then keeps its candidates' order (edits of aaaaaaaa first): counting a would hand it the errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.model.bridge import build_bridge
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.params import ModelParams

ALPHABET, LENGTH = "abcd", 8
D_MODEL, N_HEADS, D_HEAD, D_MLP = 32, 2, 16, 8
TOK, MIR, POS, FLAG, DEC, BOSD, LOGIT, AGG, DEC2, EOSD = 0, 4, 8, 18, 19, 23, 24, 25, 26, 30
SHARP = 20.0 * D_HEAD**0.5  # attention scores of 20 after TransformerLens divides by sqrt(d_head)
KEY = {p: 1.0 + 0.02 * (p - 1) for p in range(1, LENGTH + 1)}  # the lopsided variant's L1H0 key per position
STRENGTH = (1.0, 1.5, 2.0, 2.5)  # the lopsided variant's FLAG per own letter of a broken pair
COUNTED, COUNT_WEIGHT, COUNT_THRESHOLD = "d", 32.0 / 9.0, 5  # the counting variant: one broken pair + >= 5 d's

CIRCUIT = {"L0H0@chars", "0_mlp_out@chars", "L1H0@bos"}
DECOYS = {"L0H1", "L1H1", "1_mlp_out"}
EDGES = {
    ("embed@chars", "L0H0@chars", "v"): 0.5,
    ("embed@chars", "0_mlp_out@chars", "mlp_in"): 0.5,
    ("L0H0@chars", "0_mlp_out@chars", "mlp_in"): 0.5,
    ("0_mlp_out@chars", "L1H0@bos", "v"): 1.0,
    ("L1H0@bos", "logits", "logits"): 1.0,
}
PARAMS = ModelParams(n_layers=2, d_model=D_MODEL, n_heads=N_HEADS, d_head=D_HEAD, d_mlp=D_MLP, act_fn="relu",
                     normalization="none", attn_only=False, n_ctx=None)


def _weights(tokenizer: Tokenizer, lopsided: bool = False, counting: bool = False) -> dict[str, torch.Tensor]:
    """TransformerLens-shaped weights: W_Q[layer, head] is (d_model, d_head), and so on."""
    n_letters, width = len(ALPHABET), tokenizer.width
    w_e, w_pos = one_hot_embeddings(tokenizer, D_MODEL, TOK, POS, BOSD, EOSD)
    w = empty_attention(2, N_HEADS, D_MODEL, D_HEAD)

    def mirror(p: int) -> int:
        return LENGTH + 1 - p if 1 <= p <= LENGTH else p  # BOS and EOS attend to themselves

    for head in (0, 1):  # layer 0: both heads are mirror heads
        for p in range(width):
            w["W_Q"][0, head, POS + p, mirror(p)] = SHARP
            w["W_K"][0, head, POS + p, p] = 1.0
        for k in range(n_letters):
            w["W_V"][0, head, TOK + k, k] = 1.0
            w["W_O"][0, head, k, (MIR if head == 0 else DEC) + k] = 1.0 if head == 0 else 10.0
    if counting:  # L0H1 from BOS: even attention over the characters, the share of d's into LOGIT
        for name in ("W_Q", "W_K", "W_V", "W_O"):
            w[name][0, 1] = 0.0
        w["W_Q"][0, 1, POS + 0, 0] = SHARP
        for p in range(1, LENGTH + 1):
            w["W_K"][0, 1, POS + p, 0] = 1.0
        w["W_V"][0, 1, TOK + ALPHABET.index(COUNTED), 0] = 1.0
        w["W_O"][0, 1, 0, LOGIT] = COUNT_WEIGHT
    # L1H0: from BOS, even attention over the characters; reads FLAG, writes the drop to LOGIT and AGG
    w["W_Q"][1, 0, POS + 0, 0] = SHARP
    for p in range(1, LENGTH + 1):
        w["W_K"][1, 0, POS + p, 0] = KEY[p] if lopsided else 1.0
    w["W_V"][1, 0, FLAG, 0] = 1.0
    w["W_O"][1, 0, 0, LOGIT] = -2.0 * LENGTH
    w["W_O"][1, 0, 0, AGG] = 1.0
    # L1H1: from BOS to BOS only; a constant +5 on LOGIT
    w["W_Q"][1, 1, POS + 0, 0] = SHARP
    w["W_K"][1, 1, POS + 0, 0] = 1.0
    w["W_V"][1, 1, BOSD, 0] = 1.0
    w["W_O"][1, 1, 0, LOGIT] = 5.0
    w_in = torch.zeros(2, D_MODEL, D_MLP)
    w_out = torch.zeros(2, D_MLP, D_MODEL)
    for k in range(n_letters):  # MLP 0 compares own and mirror letters
        w_in[0, TOK + k, k] = 1.0
        w_in[0, MIR + k, k] = -1.0
        w_out[0, k, FLAG] = STRENGTH[k] if lopsided else 1.0
    for k in range(4):  # MLP 1: loud, inert
        w_in[1, AGG, k] = 1.0 + k
        w_out[1, k, DEC2 + k] = 25.0
    w_u = torch.zeros(D_MODEL, 2)
    w_u[LOGIT, 1] = 1.0
    b_u = torch.tensor([0.0, 2.0 - 5.0])  # cancels L1H1's constant
    return {"W_E": w_e, "W_pos": w_pos, **w, "W_in": w_in, "W_out": w_out, "W_U": w_u, "b_U": b_u}


def one_hot_embeddings(tokenizer: Tokenizer, d_model: int, tok: int, pos: int, bosd: int,
                       eosd: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W_E with each letter one-hot from dim `tok` and BOS, EOS on their own dims; W_pos one-hot from `pos`."""
    w_e = torch.zeros(tokenizer.vocab_size, d_model)
    for k, letter in enumerate(tokenizer.alphabet):
        w_e[tokenizer.encode([letter])[0, 1], tok + k] = 1.0
    w_e[tokenizer.bos_id, bosd] = 1.0
    w_e[tokenizer.eos_id, eosd] = 1.0
    w_pos = torch.zeros(tokenizer.width, d_model)
    w_pos[torch.arange(tokenizer.width), pos + torch.arange(tokenizer.width)] = 1.0
    return w_e, w_pos


def empty_attention(n_layers: int, n_heads: int, d_model: int, d_head: int) -> dict[str, torch.Tensor]:
    """Zero W_Q, W_K, W_V (layer, head, d_model, d_head) and W_O (layer, head, d_head, d_model)."""
    w = {name: torch.zeros(n_layers, n_heads, d_model, d_head) for name in ("W_Q", "W_K", "W_V")}
    w["W_O"] = torch.zeros(n_layers, n_heads, d_head, d_model)
    return w


def to_state_dict(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TransformerLens-shaped weights (W_Q[layer, head] is (d_model, d_head), ...) under the bridge's
    state-dict names (nn.Linear layout: weight is (out, in)); missing biases are zeros."""
    n_layers, n_heads, d_model, d_head = w["W_Q"].shape
    d_mlp = w["W_in"].shape[-1]
    sd = {"embed.weight": w["W_E"], "pos_embed.weight": w["W_pos"], "unembed.weight": w["W_U"].T.contiguous(),
          "unembed.bias": w["b_U"]}
    for layer in range(n_layers):
        for name in ("q", "k", "v"):
            mat = w[f"W_{name.upper()}"][layer]  # (head, d_model, d_head)
            sd[f"blocks.{layer}.attn.{name}.weight"] = mat.permute(1, 0, 2).reshape(d_model, -1).T.contiguous()
            sd[f"blocks.{layer}.attn.{name}.bias"] = torch.zeros(n_heads * d_head)
        sd[f"blocks.{layer}.attn.o.weight"] = w["W_O"][layer].reshape(-1, d_model).T.contiguous()
        sd[f"blocks.{layer}.attn.o.bias"] = torch.zeros(d_model)
        sd[f"blocks.{layer}.mlp.in.weight"] = w["W_in"][layer].T.contiguous()
        sd[f"blocks.{layer}.mlp.in.bias"] = w["b_in"][layer] if "b_in" in w else torch.zeros(d_mlp)
        sd[f"blocks.{layer}.mlp.out.weight"] = w["W_out"][layer].T.contiguous()
        sd[f"blocks.{layer}.mlp.out.bias"] = torch.zeros(d_model)
    return sd


def state_dict(tokenizer: Tokenizer, lopsided: bool = False, counting: bool = False) -> dict[str, torch.Tensor]:
    """The planted model's weights (or its lopsided or counting variant's) under the bridge's state-dict names."""
    return to_state_dict(_weights(tokenizer, lopsided, counting))


def run_planted(repo: Path, stages: Sequence[str]) -> None:
    """In a project copy: generate and tokenize, save the planted model as data/model, then run `stages`."""
    from palindrome_lens.model.classifier import save_classifier
    from tests.conftest import run

    run(["python", "-m", "stages.generate"], repo)
    run(["python", "-m", "stages.tokenize"], repo)
    tokenizer = Tokenizer.from_json(repo / "data" / "tokens" / "tokenizer.json")
    clf = planted_classifier(tokenizer)
    save_classifier(clf.model, tokenizer, clf.config, repo / "data" / "model")
    for stage in stages:
        run(["python", "-m", f"stages.{stage}"], repo)


def planted_classifier(tokenizer: Tokenizer, lopsided: bool = False, counting: bool = False) -> Classifier:
    """The hand-built model (or its lopsided or counting variant) as the pipeline would save it (config from our
    schema, weights loaded strictly)."""
    from palindrome_lens.model.config import model_config

    if tokenizer.alphabet != ALPHABET or tokenizer.width != LENGTH + 2:
        raise ValueError(f"the planted model needs alphabet {ALPHABET!r} and strings of length {LENGTH} with [EOS]")
    config = model_config(PARAMS, tokenizer, seed=0, lengths=[LENGTH])
    return Classifier(build_bridge(config, state_dict(tokenizer, lopsided, counting)), tokenizer, config)
