"""Typed, validated params: one module per params.yaml section (each field carries its rule), the
rules themselves, and the loader that hands each stage only the keys dvc.yaml declares for it.

A stage's dvc.yaml deps list `params/core.py`, `params/rules.py` and the modules of the sections it
reads, so editing one section's rule reruns only the stages that read that section.
"""

from palindrome_lens.hooks import KNOWN_HOOKS
from palindrome_lens.params.attribute import AttributeParams
from palindrome_lens.params.core import (
    DEVICES,
    GLOBALS,
    SECTIONS,
    TOP_LEVEL,
    Params,
    SectionView,
    StageParams,
    declared_params,
    known_keys,
    load_params_file,
    load_stage_params,
    section_keys,
    validate,
)
from palindrome_lens.params.data import NEGATIVE_KINDS, DataParams
from palindrome_lens.params.evaluate import EvaluateParams
from palindrome_lens.params.explain import ExplainParams
from palindrome_lens.params.extract import DTYPES, ExtractParams
from palindrome_lens.params.model import ACT_FNS, NORMALIZATIONS, ModelParams
from palindrome_lens.params.report import ReportParams
from palindrome_lens.params.tokenize import TokenizeParams
from palindrome_lens.params.train import TrainParams

__all__ = [
    "ACT_FNS",
    "DEVICES",
    "DTYPES",
    "GLOBALS",
    "KNOWN_HOOKS",
    "NEGATIVE_KINDS",
    "NORMALIZATIONS",
    "SECTIONS",
    "TOP_LEVEL",
    "AttributeParams",
    "DataParams",
    "EvaluateParams",
    "ExplainParams",
    "ExtractParams",
    "ModelParams",
    "Params",
    "ReportParams",
    "SectionView",
    "StageParams",
    "TokenizeParams",
    "TrainParams",
    "declared_params",
    "known_keys",
    "load_params_file",
    "load_stage_params",
    "section_keys",
    "validate",
]
