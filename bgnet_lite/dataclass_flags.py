"""Command-line flags from dataclass fields: one flag per field, typed from its annotation
(chapter 7).  The training settings (``TrainConfig``) and every method's options become
``bgnet-lite train`` flags this way, so a new option needs no CLI change."""

from __future__ import annotations

import argparse
import dataclasses


def field_default(item: dataclasses.Field):
    """A field's default value (calling its factory, if any) (chapter 7)."""
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def option_value(value):
    """A list flag's values as a tuple; ``none`` alone as None (chapter 7)."""
    if isinstance(value, list):
        return None if value == [None] else tuple(value)
    return value


def _none_or(convert):
    def parse(text: str):
        return None if text.lower() == "none" else convert(text)

    parse.__name__ = convert.__name__
    return parse


def add_field_flag(group, item: dataclasses.Field, choices=None, shown_default=None) -> None:
    """``--field-name`` for one dataclass field.  A flag not given is absent from the parsed
    arguments, so the dataclass default stays the one source of the value.  bool fields get
    ``--x/--no-x``; ``X | None`` fields accept ``none``; tuple fields take several values
    (chapter 7)."""
    annotation = str(item.type)
    flag = "--" + item.name.replace("_", "-")
    shown = field_default(item) if shown_default is None else shown_default
    options = {"dest": item.name, "default": argparse.SUPPRESS, "help": f"default: {shown}"}
    if annotation == "bool":
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        return
    base = (int if "int" in annotation else float if "float" in annotation else str)
    convert = _none_or(base) if "None" in annotation else base
    if annotation.startswith("tuple"):
        options["nargs"] = "+"
    group.add_argument(flag, type=convert, choices=choices, **options)
