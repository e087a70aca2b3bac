"""The compared methods side by side: family, paper row, our parameter size next to the
paper's Table 3 (chapter 9; ``benchmarks/bench_methods.py`` adds forward times)."""

from __future__ import annotations

import torch

from bgnet_lite.methods.registry import create_model, get_method, method_names
from bgnet_lite.metrics import parameter_size_mb


def table_methods() -> list[str]:
    """The rows of Tables 2-3 in the paper's order (BGNet = S5), then what the paper does not
    compare against (chapter 9)."""
    return [name for name in method_names()
            if get_method(name).paper_name is not None
            or get_method(name).family == "Beyond the paper"]


def build_offline(name: str, num_classes: int = 1, in_channels: int = 3, seed: int = 0):
    """``create_model`` with random initialisation (no weight download; chapter 9)."""
    torch.manual_seed(seed)
    fields = {item.name for item in get_method(name).option_fields()}
    options = {"weights": "none"} if "weights" in fields else {}
    return create_model(name, num_classes, in_channels, **options)


def parameter_rows(names: list[str] | None = None, num_classes: int = 1) -> list[dict]:
    """One dict per method: name, family, the paper's row name, our parameters in millions
    and in MiB of float32, and the paper's Table 3 "Params (MB)" (None where it has none;
    chapter 9).  The paper does not define its unit; chapter 9 compares both readings."""
    rows = []
    for name in names or table_methods():
        entry = get_method(name)
        model = build_offline(name, num_classes)
        count = sum(parameter.numel() for parameter in model.parameters())
        rows.append({"method": name, "family": entry.family, "paper_name": entry.paper_name,
                     "params_m": round(count / 1e6, 2),
                     "params_mb": round(parameter_size_mb(model), 2),
                     "paper_params_mb": entry.paper_params_mb, "summary": entry.summary})
    return rows
