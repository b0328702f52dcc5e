"""The Arrow schema of every table under data/attribution/, defined once: the attribute stage writes
each table cast to its schema, the report requires it when reading, and the tests check against it.

Nullable integer columns (`head`, `pos`, `mismatch_pos` in patching) are null where a sweep patches
every position, has no head, or pools every mismatch position.
"""

from __future__ import annotations

import pyarrow as pa

I64, I32, F64, F32, STR, BOOL = pa.int64(), pa.int32(), pa.float64(), pa.float32(), pa.string(), pa.bool_()


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema(list(fields))


SCHEMAS: dict[str, pa.Schema] = {
    "dla": _schema(("example_id", I64), ("text", STR), ("kind", STR), ("label", BOOL), ("length", I32),
                   ("component", STR), ("value", F64), ("logit_diff", F64)),
    "distributions": _schema(("example_id", I64), ("component", STR), ("kind", STR), ("class", STR), ("length", I32),
                             ("value", F64), ("centred", F64)),
    "distribution_stats": _schema(("component", STR), ("grouping", STR), ("group", STR), ("n", I64), ("mean", F64),
                                  ("std", F64), ("q05", F64), ("q25", F64), ("q50", F64), ("q75", F64), ("q95", F64)),
    "attention": _schema(("layer", I64), ("head", I64), ("component", STR), ("length", I64), ("dest", I64),
                         ("src", I64), ("value", F64), ("n", I64)),
    "mirror": _schema(("component", STR), ("layer", I64), ("head", I64), ("length", I64), ("kind", STR), ("n", I64),
                      ("mirror_score", F64), ("std", F64)),
    "patching": _schema(("length", I64), ("activation", STR), ("component", STR), ("layer", I64), ("head", I32),
                        ("pos", I32), ("mismatch_pos", I32), ("n", I64), ("recovery", F64), ("pair_q25", F64),
                        ("pair_median", F64), ("pair_q75", F64), ("clean_logit_diff", F64),
                        ("corrupted_logit_diff", F64)),
    "ablation": _schema(("component", STR), ("positions", STR), ("mode", STR), ("kind", STR), ("n", I64),
                        ("accuracy", F64), ("mean_logit_diff", F64), ("mean_margin", F64), ("accuracy_change", F64),
                        ("logit_diff_change", F64), ("margin_change", F64)),
    "nodes": _schema(("node", STR), ("component", STR), ("layer", I64), ("group", STR),
                     ("ablated_alone_margin_loss", F64), ("kept_alone_faithfulness", F64), ("in_circuit", BOOL),
                     ("minimality", F64)),
    "edges": _schema(("sender", STR), ("sender_component", STR), ("sender_layer", I64), ("sender_group", STR),
                     ("receiver", STR), ("receiver_component", STR), ("receiver_layer", I64), ("receiver_group", STR),
                     ("via", STR), ("effect", F64), ("n_pairs", I64), ("pair_q25", F64), ("pair_median", F64),
                     ("pair_q75", F64)),
    "composition": _schema(("mode", STR), ("sender", STR), ("receiver", STR), ("score", F64), ("baseline_mean", F64),
                           ("baseline_q95", F64), ("ratio", F64), ("above_q95", BOOL)),
    "readout_attention": _schema(("component", STR), ("layer", I64), ("head", I64), ("length", I64), ("status", STR),
                                 ("half", STR), ("n", I64), ("attention", F64)),
    "pos_qk": _schema(("length", I64), ("layer", I64), ("head", I64), ("component", STR), ("query_pos", I64),
                      ("key_pos", I64), ("score", F64), ("pattern", F64)),
    "pos_embed": _schema(("pos", I64), ("dim", I64), ("value", F64)),
    "pos_cosine": _schema(("pos_i", I64), ("pos_j", I64), ("cosine", F64)),
    "adversarial": _schema(("rank", I64), ("source_id", I64), ("source", STR), ("text", STR), ("length", I64),
                           ("position", I64), ("pair_pos", I64), ("old", STR), ("new", STR), ("label", BOOL),
                           ("logit_diff", F64), ("source_logit_diff", F64), ("predicted", BOOL), ("margin", F64),
                           ("correct", BOOL)),
    "adversarial_by_position": _schema(("length", I64), ("pair_pos", I64), ("n", I64), ("n_wrong", I64),
                                       ("min_margin", F64), ("mean_margin", F64), ("accuracy", F64)),
    "readout_by_position": _schema(("component", STR), ("layer", I64), ("head", I64), ("length", I64), ("pos", I64),
                                   ("status", STR), ("n", I64), ("attention", F64)),
    # The explorer's strings, one at a time (per_example.py); `key` joins them, example_id is null off the analysis set.
    "example_strings": _schema(("key", I64), ("source", STR), ("text", STR), ("kind", STR), ("label", BOOL),
                               ("example_id", I64), ("length", I64), ("logit_diff", F64), ("correct", BOOL),
                               ("counterpart", STR), ("counterpart_logit_diff", F64)),
    "example_dla": _schema(("key", I64), ("component", STR), ("value", F64)),
    "example_attention": _schema(("key", I64), ("layer", I64), ("head", I64), ("dest", I64), ("src", I64),
                                 ("value", F32)),  # float32: a pattern to look at, half the disk
    "example_patching": _schema(("key", I64), ("node", STR), ("patched_logit_diff", F64), ("recovery", F64)),
}


def columns(name: str) -> dict[str, pa.DataType]:
    """{column: type} of one table, as `read_table(path, required)` takes it."""
    return {f.name: f.type for f in SCHEMAS[name]}
