"""Per-component DLA distributions by class and by kind, centred on the palindrome-class mean.

As in ARENA's bracket classifier: subtracting the mean contribution over palindromes shows, per
component, how far a non-palindrome pushes away from "palindrome"; a component that separates the
classes has its non-palindrome histogram far from 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CLASS_NAMES = {True: "palindrome", False: "not_palindrome"}
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def centred_components(dla: pd.DataFrame) -> pd.DataFrame:
    """distributions.parquet: per (example, component) the value minus the palindrome-class mean.

    Columns: example_id, component, kind, class, length, value, centred. When the set holds no
    palindrome, `centred` is NaN.
    """
    palindrome_mean = dla[dla["label"]].groupby("component", sort=False)["value"].mean()
    out = dla[["example_id", "component", "kind", "length", "value"]].copy()
    out.insert(3, "class", dla["label"].map(CLASS_NAMES))
    out["centred"] = out["value"] - out["component"].map(palindrome_mean).astype("float64")
    return out.reset_index(drop=True)


def distribution_stats(centred: pd.DataFrame) -> pd.DataFrame:
    """distribution_stats.parquet: n, mean, std and quantiles of `centred` per component and group.

    `grouping` is "class" or "kind"; `group` its value. Rows keep the DLA component order.
    """
    order = {name: i for i, name in enumerate(dict.fromkeys(centred["component"]))}
    rows = []
    for grouping in ("class", "kind"):
        for (component, group), values in centred.groupby(["component", grouping], sort=True)["centred"]:
            v = values.to_numpy(dtype="float64")
            finite = v[np.isfinite(v)]
            row = {"component": component, "grouping": grouping, "group": group, "n": int(len(v)),
                   "mean": float(finite.mean()) if finite.size else np.nan,
                   "std": float(finite.std()) if finite.size else np.nan}
            for q in QUANTILES:
                row[f"q{round(q * 100):02d}"] = float(np.quantile(finite, q)) if finite.size else np.nan
            rows.append(row)
    stats = pd.DataFrame(rows)
    stats["_order"] = stats["component"].map(order)
    return stats.sort_values(["_order", "grouping", "group"]).drop(columns="_order").reset_index(drop=True)
