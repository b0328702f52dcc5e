"""Typed, validated params: the one place where params.yaml is read and checked.

Every stage calls `load_stage_params(stage)` before doing any work. It validates the *whole*
params.yaml (so a misspelt key anywhere is caught), then hands the stage a view that exposes only
the keys `dvc.yaml` declares for that stage. Reading an undeclared key is an error, so a stage can
never depend on a param that DVC does not track for it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from palindrome_lens.errors import ParamsError

NEGATIVE_KINDS = ("near1", "near2", "random")
ACT_FNS = ("relu", "gelu", "silu", "gelu_new")
NORMALIZATIONS = ("LN", "none")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float16")
PER_LAYER_HOOKS = (
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "mlp.hook_post",
    "hook_mlp_out",
    "ln1.hook_scale",
    "ln2.hook_scale",
)
GLOBAL_HOOKS = ("hook_embed", "hook_pos_embed", "ln_final.hook_scale")
KNOWN_HOOKS = GLOBAL_HOOKS + PER_LAYER_HOOKS
MAX_ALPHABET = 200


# ---------------------------------------------------------------------------------------------
# Small checkers: each names the key, the bad value and what is allowed.


def _fail(key: str, value: Any, allowed: str) -> ParamsError:
    return ParamsError(f"{key}: {value!r} is not allowed; {allowed}")


def _int(key: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, value, "it must be an integer")
    if lo is not None and value < lo:
        raise _fail(key, value, f"it must be >= {lo}")
    if hi is not None and value > hi:
        raise _fail(key, value, f"it must be <= {hi}")
    return value


def _float(key: str, value: Any, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(key, value, "it must be a finite number")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise _fail(key, value, f"it must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise _fail(key, value, f"it must be <= {hi}")
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, value, "it must be true or false")
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(key, value, f"it must be one of {', '.join(choices)}")
    return value


def _optional(check: Callable[..., Any]) -> Callable[..., Any]:
    def inner(key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        return None if value is None else check(key, value, *args, **kwargs)

    return inner


# ---------------------------------------------------------------------------------------------
# Sections. Field order is the order used in params.yaml.


@dataclass(frozen=True)
class DataParams:
    alphabet: str
    lengths: tuple[int, ...]
    n_train: int
    n_val: int
    n_test: int
    palindrome_fraction: float
    negative_mix: Mapping[str, float]

    @classmethod
    def check(cls, raw: Mapping[str, Any]) -> DataParams:
        alphabet = raw["alphabet"]
        if not isinstance(alphabet, str) or not alphabet:
            raise _fail("data.alphabet", alphabet, "it must be a non-empty string of distinct characters")
        dupes = sorted({c for c in alphabet if alphabet.count(c) > 1})
        if dupes:
            raise _fail("data.alphabet", alphabet, f"characters must be distinct, but {''.join(dupes)!r} repeat")
        if len(alphabet) > MAX_ALPHABET:
            raise _fail("data.alphabet", f"<{len(alphabet)} characters>", f"at most {MAX_ALPHABET} characters")
        bad = [c for c in alphabet if not c.isprintable() or c.isspace()]
        if bad:
            raise _fail("data.alphabet", alphabet, f"characters must be printable and not spaces: {bad!r}")
        lengths = raw["lengths"]
        if not isinstance(lengths, list) or not lengths:
            raise _fail("data.lengths", lengths, "it must be a non-empty list of integers, e.g. [10]")
        for length in lengths:
            if isinstance(length, bool) or not isinstance(length, int):
                raise _fail("data.lengths", lengths, "every length must be an integer")
            if length < 2:
                raise ParamsError(f"data.lengths: {length} is too short; lengths must be >= 2")
            if length > 256:
                raise ParamsError(f"data.lengths: {length} is too long; lengths must be <= 256")
        if len(set(lengths)) != len(lengths):
            raise _fail("data.lengths", lengths, "lengths must not repeat")
        mix = raw["negative_mix"]
        if not isinstance(mix, Mapping):
            raise _fail("data.negative_mix", mix, f"it must be a mapping with keys {', '.join(NEGATIVE_KINDS)}")
        unknown = sorted(set(mix) - set(NEGATIVE_KINDS), key=str)  # YAML keys may be numbers too
        if unknown:
            raise ParamsError(
                f"data.negative_mix.{unknown[0]}: unknown kind; known kinds are {', '.join(NEGATIVE_KINDS)}"
            )
        missing = [k for k in NEGATIVE_KINDS if k not in mix]
        if missing:
            raise ParamsError(f"data.negative_mix.{missing[0]} is missing; give all of {', '.join(NEGATIVE_KINDS)}")
        mix = {k: _float(f"data.negative_mix.{k}", mix[k], lo=0.0, hi=1.0) for k in NEGATIVE_KINDS}
        if abs(sum(mix.values()) - 1.0) > 1e-6:
            raise _fail("data.negative_mix", mix, f"the fractions must sum to 1 (they sum to {sum(mix.values()):g})")
        params = cls(
            alphabet=alphabet,
            lengths=tuple(lengths),
            n_train=_int("data.n_train", raw["n_train"], lo=1),
            n_val=_int("data.n_val", raw["n_val"], lo=1),
            n_test=_int("data.n_test", raw["n_test"], lo=1),
            palindrome_fraction=_float("data.palindrome_fraction", raw["palindrome_fraction"], lo=0.0, hi=1.0),
            negative_mix=mix,
        )
        params._check_capacity()
        return params

    def _check_capacity(self) -> None:
        """Val and test hold distinct strings (and none of train's), so they cannot exceed what exists."""
        size = len(self.alphabet)
        distinct = sum(size**length for length in self.lengths)
        held_out = self.n_val + self.n_test
        if self.n_test > distinct or held_out > distinct:
            raise ParamsError(
                f"data.n_test: {self.n_test} (+ data.n_val {self.n_val}) is larger than the {distinct} distinct "
                f"strings of lengths {list(self.lengths)} over {size} letters; lower it or add letters/lengths"
            )
        k = len(self.lengths)
        for length in self.lengths:
            # Each length gets about 1/k of every split; half of its palindromes must stay for training.
            wanted = sum(math.ceil(math.ceil(n / k) * self.palindrome_fraction) for n in (self.n_val, self.n_test))
            available = size ** ((length + 1) // 2)
            if wanted > available // 2:
                raise ParamsError(
                    f"data.n_test: {self.n_test} (+ data.n_val {self.n_val}) needs about {wanted} distinct held-out "
                    f"palindromes of length {length}, but only {available} exist and half must stay for training; "
                    "lower the split sizes or data.palindrome_fraction, or add letters or longer lengths"
                )
        self._check_every_kind_is_evaluated()
        if size < 2 and self.palindrome_fraction < 1:
            raise _fail("data.alphabet", self.alphabet, "a one-letter alphabet makes only palindromes; add letters")


    def _check_every_kind_is_evaluated(self) -> None:
        """Val and test must hold every kind the mix asks for, at every length, or the breakdown lies."""
        k = len(self.lengths)
        shares = {"palindrome": self.palindrome_fraction}
        shares |= {kind: (1 - self.palindrome_fraction) * f for kind, f in self.negative_mix.items()}
        for split, n in (("n_val", self.n_val), ("n_test", self.n_test)):
            for kind, share in shares.items():
                if kind == "near2" and all(length < 4 for length in self.lengths):
                    continue  # lengths 2-3 have one mirrored pair: near2 cannot exist there
                if share > 0 and (n // k) * share < 1:
                    need = math.ceil(min(k / share, 2**63))  # a tiny share overflows the division
                    raise ParamsError(
                        f"data.{split}: {n} is too small; with {k} length(s) the {kind} share ({share:g}) gets no "
                        f"examples at some length, so its metrics would be missing; use at least {need}"
                    )


@dataclass(frozen=True)
class TokenizeParams:
    add_eos: bool

    @classmethod
    def check(cls, raw: Mapping[str, Any]) -> TokenizeParams:
        return cls(add_eos=_bool("tokenize.add_eos", raw["add_eos"]))


@dataclass(frozen=True)
class ModelParams:
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int | None
    d_mlp: int
    act_fn: str
    normalization: str
    attn_only: bool
    n_ctx: int | None

    @classmethod
    def check(cls, raw: Mapping[str, Any]) -> ModelParams:
        d_model = _int("model.d_model", raw["d_model"], lo=1, hi=4096)
        n_heads = _int("model.n_heads", raw["n_heads"], lo=1, hi=64)
        d_head = _optional(_int)("model.d_head", raw["d_head"], lo=1, hi=4096)
        if d_head is None and d_model % n_heads:
            raise ParamsError(
                f"model.d_model: {d_model} does not divide into model.n_heads {n_heads} heads; "
                "choose a multiple of n_heads or set model.d_head"
            )
        return cls(
            n_layers=_int("model.n_layers", raw["n_layers"], lo=1, hi=48),
            d_model=d_model,
            n_heads=n_heads,
            d_head=d_head,
            d_mlp=_int("model.d_mlp", raw["d_mlp"], lo=1, hi=65536),
            act_fn=_choice("model.act_fn", raw["act_fn"], ACT_FNS),
            normalization=_choice("model.normalization", raw["normalization"], NORMALIZATIONS),
            attn_only=_bool("model.attn_only", raw["attn_only"]),
            n_ctx=_optional(_int)("model.n_ctx", raw["n_ctx"], lo=3, hi=4096),
        )

    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads


@dataclass(frozen=True)
class TrainParams:
    lr: float
    weight_decay: float
    batch_size: int
    n_examples: int
    warmup_fraction: float
    grad_clip: float
    eval_every: int
    device: str

    @classmethod
    def check(cls, raw: Mapping[str, Any]) -> TrainParams:
        return cls(
            lr=_float("train.lr", raw["lr"], lo=0.0, hi=10.0, lo_open=True),
            weight_decay=_float("train.weight_decay", raw["weight_decay"], lo=0.0, hi=10.0),
            batch_size=_int("train.batch_size", raw["batch_size"], lo=1, hi=1 << 20),
            n_examples=_int("train.n_examples", raw["n_examples"], lo=1),
            warmup_fraction=_float("train.warmup_fraction", raw["warmup_fraction"], lo=0.0, hi=1.0),
            grad_clip=_float("train.grad_clip", raw["grad_clip"], lo=0.0, lo_open=True),
            eval_every=_int("train.eval_every", raw["eval_every"], lo=1),
            device=_choice("train.device", raw["device"], DEVICES),
        )


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int

    @classmethod
    def check(cls, raw: Mapping[str, Any]) -> EvaluateParams:
        return cls(batch_size=_int("evaluate.batch_size", raw["batch_size"], lo=1, hi=1 << 20))


@dataclass(frozen=True)
class ExtractParams:
    n_per_group: int
    n_pairs: int
    hooks: tuple[str, ...]
    dtype: str
    batch_size: int

    @classmethod
    def check(cls, raw: Mapping[str, Any]) -> ExtractParams:
        hooks = raw["hooks"]
        if not isinstance(hooks, list) or not hooks:
            raise _fail("extract.hooks", hooks, f"it must be a non-empty list drawn from {', '.join(KNOWN_HOOKS)}")
        for hook in hooks:
            if hook not in KNOWN_HOOKS:
                raise ParamsError(
                    f"extract.hooks: {hook!r} is not a hook we extract; valid hooks are {', '.join(KNOWN_HOOKS)} "
                    "(per-layer names are kept for every layer)"
                )
        if len(set(hooks)) != len(hooks):
            raise _fail("extract.hooks", hooks, "hooks must not repeat")
        return cls(
            n_per_group=_int("extract.n_per_group", raw["n_per_group"], lo=1),
            n_pairs=_int("extract.n_pairs", raw["n_pairs"], lo=1),
            hooks=tuple(hooks),
            dtype=_choice("extract.dtype", raw["dtype"], DTYPES),
            batch_size=_int("extract.batch_size", raw["batch_size"], lo=1, hi=1 << 20),
        )


@dataclass(frozen=True)
class AttributeParams:
    n_adversarial: int
    batch_size: int
    max_circuit_heads: int

    @classmethod
    def check(cls, raw: Mapping[str, Any]) -> AttributeParams:
        return cls(
            n_adversarial=_int("attribute.n_adversarial", raw["n_adversarial"], lo=1),
            batch_size=_int("attribute.batch_size", raw["batch_size"], lo=1, hi=1 << 20),
            max_circuit_heads=_int("attribute.max_circuit_heads", raw["max_circuit_heads"], lo=1),
        )


@dataclass(frozen=True)
class ReportParams:
    n_examples: int
    hist_bins: int

    @classmethod
    def check(cls, raw: Mapping[str, Any]) -> ReportParams:
        return cls(
            n_examples=_int("report.n_examples", raw["n_examples"], lo=1, hi=10_000),
            hist_bins=_int("report.hist_bins", raw["hist_bins"], lo=2, hi=1000),
        )


SECTIONS: dict[str, type] = {
    "data": DataParams,
    "tokenize": TokenizeParams,
    "model": ModelParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "extract": ExtractParams,
    "attribute": AttributeParams,
    "report": ReportParams,
}
TOP_LEVEL = ("seed", *SECTIONS)


def section_keys(section: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(SECTIONS[section]))


def known_keys() -> list[str]:
    keys = ["seed"]
    for section in SECTIONS:
        keys += [f"{section}.{name}" for name in section_keys(section)]
    return keys


@dataclass(frozen=True)
class Params:
    seed: int
    data: DataParams
    tokenize: TokenizeParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    extract: ExtractParams
    attribute: AttributeParams
    report: ReportParams


def validate(raw: Any) -> Params:
    """Check a whole params mapping; raise ParamsError naming the first bad key."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"params.yaml must be a mapping of sections, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in TOP_LEVEL]
    if unknown:
        raise ParamsError(f"{unknown[0]}: unknown key in params.yaml; known top-level keys are {', '.join(TOP_LEVEL)}")
    missing = [k for k in TOP_LEVEL if k not in raw]
    if missing:
        raise ParamsError(f"{missing[0]} is missing from params.yaml; it needs all of {', '.join(TOP_LEVEL)}")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        section = raw[name]
        if not isinstance(section, Mapping):
            raise _fail(name, section, f"it must be a mapping with keys {', '.join(section_keys(name))}")
        expected = section_keys(name)
        for key in section:
            if key not in expected:
                raise ParamsError(f"{name}.{key}: unknown key; known keys in {name} are {', '.join(expected)}")
        for key in expected:
            if key not in section:
                raise ParamsError(f"{name}.{key} is missing from params.yaml")
        sections[name] = cls.check(section)
    params = Params(seed=_int("seed", raw["seed"], lo=0, hi=2**32 - 1), **sections)
    _check_across_sections(params)
    return params


def _check_across_sections(params: Params) -> None:
    width = max(params.data.lengths) + 1 + int(params.tokenize.add_eos)
    n_ctx = params.model.n_ctx
    if n_ctx is not None and n_ctx < width:
        raise ParamsError(
            f"model.n_ctx: {n_ctx} is too small for data.lengths up to {max(params.data.lengths)}; "
            f"it must be >= {width} (BOS + characters{' + EOS' if params.tokenize.add_eos else ''}) or null"
        )


def load_params_file(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found; run from the project root or pass the params file path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    return validate(raw)


# ---------------------------------------------------------------------------------------------
# Declared-keys views.


def declared_params(stage: str, dvc_yaml: str | Path = "dvc.yaml") -> tuple[str, ...]:
    """The params keys that dvc.yaml lists for `stage` (what DVC tracks for it)."""
    dvc_yaml = Path(dvc_yaml)
    try:
        spec = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"cannot read {dvc_yaml}: {exc}") from exc
    stages = (spec or {}).get("stages", {})
    if stage not in stages:
        raise ParamsError(f"stage {stage!r} is not in {dvc_yaml}; stages are {', '.join(stages)}")
    keys = tuple(stages[stage].get("params", []))
    known = set(known_keys())
    for key in keys:
        if not isinstance(key, str) or key not in known:
            raise ParamsError(f"{dvc_yaml}: stage {stage} declares param {key!r}, which params.yaml does not define")
    return keys


@dataclass(frozen=True)
class SectionView:
    """One section with only the declared fields readable."""

    _name: str
    _values: Any
    _declared: frozenset[str] = field(default_factory=frozenset)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        if key not in self._declared:
            raise ParamsError(
                f"{self._name}.{key} is read by this stage but not declared in dvc.yaml; "
                "add it to the stage's params so DVC reruns the stage when it changes"
            )
        return getattr(self._values, key)

    def whole(self) -> Any:
        """The section's typed dataclass, allowed only when the stage declares every one of its keys."""
        missing = [f.name for f in dataclasses.fields(self._values) if f.name not in self._declared]
        if missing:
            raise ParamsError(
                f"this stage takes all of {self._name} but dvc.yaml does not declare "
                + ", ".join(f"{self._name}.{m}" for m in missing)
            )
        return self._values


@dataclass(frozen=True)
class StageParams:
    """What a stage may read: `p.seed`, `p.data.alphabet`, ... (declared keys only)."""

    stage: str
    _params: Params
    _declared: frozenset[str]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        if key == "seed":
            if "seed" not in self._declared:
                raise ParamsError(f"stage {self.stage} reads seed but dvc.yaml does not declare it")
            return self._params.seed
        if key not in SECTIONS:
            raise AttributeError(key)
        fields = frozenset(k.split(".", 1)[1] for k in self._declared if k.startswith(f"{key}."))
        return SectionView(key, getattr(self._params, key), fields)

    def as_dict(self) -> dict[str, Any]:
        """The declared keys and their values, flat (for logging)."""
        out: dict[str, Any] = {}
        for key in sorted(self._declared):
            section, _, name = key.partition(".")
            value = getattr(getattr(self._params, section), name) if name else self._params.seed
            out[key] = dict(value) if isinstance(value, Mapping) else value
        return out


def load_stage_params(stage: str, root: str | Path = ".") -> StageParams:
    """Validate params.yaml, then return only what dvc.yaml declares for `stage`."""
    root = Path(root)
    params = load_params_file(root / "params.yaml")
    declared = declared_params(stage, root / "dvc.yaml")
    return StageParams(stage, params, frozenset(declared))
