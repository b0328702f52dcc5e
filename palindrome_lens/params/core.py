"""Typed, validated params: the one place where params.yaml is read and checked.

Every stage calls `load_stage_params(stage)` before doing any work. It validates the *whole*
params.yaml (so a misspelt key anywhere is caught), then hands the stage a view that exposes only
the keys `dvc.yaml` declares for that stage. Reading an undeclared key is an error, so a stage can
never depend on a param that DVC does not track for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from palindrome_lens.errors import ParamsError
from palindrome_lens.params.attribute import AttributeParams
from palindrome_lens.params.data import DataParams
from palindrome_lens.params.evaluate import EvaluateParams
from palindrome_lens.params.explain import ExplainParams
from palindrome_lens.params.extract import ExtractParams
from palindrome_lens.params.model import ModelParams
from palindrome_lens.params.report import ReportParams
from palindrome_lens.params.rules import Rule, Section, choice, fail, integer
from palindrome_lens.params.tokenize import TokenizeParams
from palindrome_lens.params.train import TrainParams

DEVICES = ("auto", "cpu", "cuda")
# Top-level keys that are not sections: read by several stages, each declaring them in dvc.yaml.
GLOBALS: dict[str, Rule] = {
    "seed": integer(lo=0, hi=2**32 - 1),
    "device": choice(DEVICES),  # auto: CUDA when available; every stage that runs the model reads it
}
SECTIONS: dict[str, type[Section]] = {
    cls.name: cls
    for cls in (DataParams, TokenizeParams, ModelParams, TrainParams, EvaluateParams, ExtractParams,
                AttributeParams, ExplainParams, ReportParams)
}
TOP_LEVEL = (*GLOBALS, *SECTIONS)


def section_keys(section: str) -> tuple[str, ...]:
    return SECTIONS[section].keys()


def known_keys() -> list[str]:
    keys = list(GLOBALS)
    for section in SECTIONS:
        keys += [f"{section}.{name}" for name in section_keys(section)]
    return keys


@dataclass(frozen=True)
class Params:
    seed: int
    device: str
    data: DataParams
    tokenize: TokenizeParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    extract: ExtractParams
    attribute: AttributeParams
    explain: ExplainParams
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
        expected = section_keys(name)
        if not isinstance(section, Mapping):
            raise fail(name, section, f"it must be a mapping with keys {', '.join(expected)}")
        for key in section:
            if key not in expected:
                raise ParamsError(f"{name}.{key}: unknown key; known keys in {name} are {', '.join(expected)}")
        for key in expected:
            if key not in section:
                raise ParamsError(f"{name}.{key} is missing from params.yaml")
        sections[name] = cls.check(section)
    params = Params(**{key: check(key, raw[key]) for key, check in GLOBALS.items()}, **sections)
    _check_across_sections(params)
    return params


def _check_across_sections(params: Params) -> None:
    if params.model.readout == "eos" and not params.tokenize.add_eos:
        raise ParamsError("model.readout: 'eos' is not allowed with tokenize.add_eos false; there is no [EOS] to "
                          "read the class at (set tokenize.add_eos: true, or model.readout: bos)")
    _check_hypotheses(params)
    width = max(params.data.lengths) + 1 + int(params.tokenize.add_eos)
    n_ctx = params.model.n_ctx
    if n_ctx is not None and n_ctx < width:
        raise ParamsError(
            f"model.n_ctx: {n_ctx} is too small for data.lengths up to {max(params.data.lengths)}; "
            f"it must be >= {width} (BOS + characters{' + EOS' if params.tokenize.add_eos else ''}) or null"
        )


def _check_hypotheses(params: Params) -> None:
    """A hypothesis must scrub after a layer the model has, at groups the strings have."""
    n_layers, lengths = params.model.n_layers, params.data.lengths
    for i, hypothesis in enumerate(params.attribute.hypotheses):
        where = f"attribute.hypotheses[{i}]"
        if hypothesis["after_layer"] >= n_layers:
            raise fail(f"{where}.after_layer", hypothesis["after_layer"],
                       f"the model has {n_layers} layer{'s' if n_layers != 1 else ''} (model.n_layers), so it must be "
                       f"0..{n_layers - 1}")
        for group in hypothesis["keep"]:
            if group == "eos" and not params.tokenize.add_eos:
                raise fail(f"{where}.keep.eos", hypothesis["keep"][group],
                           "there is no [EOS] position (tokenize.add_eos is false)")
            if group == "centre" and not any(n % 2 for n in lengths):
                raise fail(f"{where}.keep.centre", hypothesis["keep"][group],
                           f"no string has a centre character: every length in data.lengths ({lengths}) is even")


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
    """What a stage may read: `p.seed`, `p.device`, `p.data.alphabet`, ... (declared keys only)."""

    stage: str
    _params: Params
    _declared: frozenset[str]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        if key in GLOBALS:
            if key not in self._declared:
                raise ParamsError(f"stage {self.stage} reads {key} but dvc.yaml does not declare it")
            return getattr(self._params, key)
        if key not in SECTIONS:
            raise AttributeError(key)
        fields = frozenset(k.split(".", 1)[1] for k in self._declared if k.startswith(f"{key}."))
        return SectionView(key, getattr(self._params, key), fields)

    def as_dict(self, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        """The declared keys and their values, flat (for logging); `exclude` drops keys."""
        out: dict[str, Any] = {}
        for key in sorted(self._declared):
            if key in exclude:
                continue
            section, _, name = key.partition(".")
            value = getattr(getattr(self._params, section), name) if name else getattr(self._params, section)
            out[key] = dict(value) if isinstance(value, Mapping) else value
        return out


def load_stage_params(stage: str, root: str | Path = ".") -> StageParams:
    """Validate params.yaml, then return only what dvc.yaml declares for `stage`."""
    root = Path(root)
    params = load_params_file(root / "params.yaml")
    declared = declared_params(stage, root / "dvc.yaml")
    return StageParams(stage, params, frozenset(declared))
