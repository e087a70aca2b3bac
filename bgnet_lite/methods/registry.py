"""One registry for every method the book trains and compares (chapters 6-7, Tables 1-3).

Every method obeys one contract, so the engine, the CLI and the chapters never branch on a
method's name:

* ``create_model(name, num_classes, in_channels, **options)`` builds it.  ``num_classes`` is
  the number of logit channels K: 1 for a binary defect mask, else the number of classes
  including the background (class 0).  ``in_channels`` is 1 or 3 per image.
* ``model(template, sample)`` with two ``[N, in_channels, H, W]`` images in [0, 1] returns
  logits ``[N, K, H, W]``.
* Optional hooks the engine asks for, when a model has them: ``training_losses(batch) ->
  (logits, {name: weighted loss})`` for extra loss terms (BGNet's matching loss);
  ``forward_details(template, sample) -> dict`` with "logits" and, for a matching model,
  "matches" (scored by ``metrics.matching_accuracy``); ``pretrained`` (bool, recorded in
  every run).  A model without trainable parameters (a classical baseline) is evaluated
  without training, after ``calibrate(val_loader, device) -> dict`` if it has one (settings
  chosen on the validation split and kept in buffers, so they travel in its checkpoint).

An entry's ``options`` is a dataclass: its fields (nested dataclasses flattened) are the
method's options, shown by ``bgnet-lite methods`` and turned into ``bgnet-lite train`` flags.
Fields named ``num_classes`` and ``in_channels`` are the contract's and set by
``create_model``; ``fixed`` holds options an entry pins (BGNet's variant).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from bgnet_lite.paper_results import PAPER_TABLE2, PAPER_TABLE3

# Table 2's groups, the paper's own ablation (Table 1), and what the paper never compares
# against: registration + differencing without learning (the classical AOI baseline)
FAMILIES = ("Classical", "Attention-based", "Foreground generalization",
            "Background generalization", "Ours", "Beyond the paper")
CONTRACT_FIELDS = ("num_classes", "in_channels")


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: how to build it and what the paper says of it (chapter 7)."""

    name: str
    family: str
    citation: str
    summary: str
    options: type
    build: Callable[[Any], nn.Module]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    paper_name: str | None = None  # its row in the paper's Tables 2-3

    @property
    def paper_params_mb(self) -> float | None:
        """Params (MB) of the paper's Table 3, None where the paper gives none (chapter 6)."""
        row = PAPER_TABLE3.get(self.paper_name)
        return None if row is None else row[2]

    @property
    def paper_miou_ocd(self) -> float | None:
        """mIoU on the paper's OCDs (Table 2), None where the paper gives none (chapter 7)."""
        row = PAPER_TABLE2.get(self.paper_name)
        return None if row is None else row[3]

    def option_fields(self) -> list[dataclasses.Field]:
        """The options a user may set (nested dataclasses flattened, contract and fixed
        fields left out), in declaration order (chapter 7)."""
        hidden = set(CONTRACT_FIELDS) | set(self.fixed)
        return [item for item in _flat_fields(self.options) if item.name not in hidden]

    def make_options(self, num_classes: int, in_channels: int, **options) -> Any:
        """The options dataclass for these settings; a clear error for an unknown name
        (chapter 7)."""
        known = {item.name for item in self.option_fields()}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"method {self.name!r} has no option {', '.join(unknown)}; "
                             f"its options: {', '.join(sorted(known)) or 'none'}")
        given = {**options, **self.fixed}
        names = {item.name for item in dataclasses.fields(self.options)}
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if name in names:
                given[name] = value
        return _build_dataclass(self.options, given)


def _flat_fields(cls: type) -> Iterator[dataclasses.Field]:
    for item in dataclasses.fields(cls):
        nested = _nested_type(item)
        if nested is not None:
            yield from _flat_fields(nested)
        else:
            yield item


def _nested_type(item: dataclasses.Field) -> type | None:
    """The dataclass type of a field whose default is a dataclass instance, else None."""
    if item.default_factory is not dataclasses.MISSING:
        default = item.default_factory()
        if dataclasses.is_dataclass(default):
            return type(default)
    return None


def _build_dataclass(cls: type, flat: dict) -> Any:
    """``cls`` from flat option names, routing each name into its nested dataclass."""
    values = {}
    for item in dataclasses.fields(cls):
        nested = _nested_type(item)
        if nested is not None:
            names = {sub.name for sub in _flat_fields(nested)}
            values[item.name] = _build_dataclass(
                nested, {k: v for k, v in flat.items() if k in names})
        elif item.name in flat:
            values[item.name] = flat[item.name]
    return cls(**values)


_REGISTRY: dict[str, MethodEntry] = {}


def register_method(name: str, *, family: str, citation: str, summary: str, options: type,
                    fixed: Mapping[str, Any] | None = None, paper_name: str | None = None):
    """Decorator registering ``build(options) -> nn.Module`` under ``name`` (chapter 7).

    A method from outside the package registers the same way; nothing else changes."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"options of {name!r} must be a dataclass type")

    def decorator(build: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = MethodEntry(name, family, citation, summary, options, build,
                                      dict(fixed or {}), paper_name)
        return build

    return decorator


def unregister_method(name: str) -> None:
    """Remove a method (for tests that register their own; chapter 7)."""
    _REGISTRY.pop(name, None)


def method_names() -> list[str]:
    """Registered names, in registration order (chapter 7)."""
    return list(_REGISTRY)


def get_method(name: str) -> MethodEntry:
    """The entry of ``name``; a ValueError listing every name otherwise (chapter 7)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(_REGISTRY)} "
                         "(`bgnet-lite methods` lists them)")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 1, in_channels: int = 3, **options) -> nn.Module:
    """Build the registered method ``name`` (chapter 7): ``forward(template, sample) -> logits
    [N, num_classes, H, W]``."""
    if num_classes < 1:
        raise ValueError(f"num_classes is the number of logit channels (1 = binary), "
                         f"got {num_classes}")
    entry = get_method(name)
    return entry.build(entry.make_options(num_classes, in_channels, **options))
