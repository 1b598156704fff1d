"""The config's key reference, read off the dataclasses: ``distgan config keys``, ``distgan config schema``
and docs/config.md.

Every field of the tree in ``distgan.config.schema`` carries its docstring as a string literal right below
it. Python keeps no such attribute docstrings at run time, so they are read from the module's source with
``ast``, the way documentation tools read them; types come from the annotations, defaults from the fields.
One walk of the tree (``walk``) feeds every output, so the CLI, the JSON Schema and the Markdown reference
cannot disagree. Imports nothing of distgan outside ``distgan.config``: ``distgan --help`` uses it.

Regenerate docs/config.md with::

    python -m distgan.config.reference > docs/config.md
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

import yaml

from distgan.config.schema import Config

REGENERATE = "python -m distgan.config.reference > docs/config.md"
"""The command that rewrites docs/config.md (the test of its freshness prints it)."""

JSON_SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class Key:
    """One entry of the tree: a leaf key, or a section (a nested dataclass) whose keys follow it."""

    key: str
    """Dotted path from the top, e.g. ``deepspeed.g.zero_stage``."""
    type: Any
    """The annotation (resolved), or the section's dataclass."""
    default: Any
    """The default as plain data (what YAML holds); None for a section."""
    doc: str
    """The field's docstring, dedented."""

    @property
    def is_section(self) -> bool:
        return dataclasses.is_dataclass(self.type)

    @property
    def depth(self) -> int:
        return self.key.count(".")


# -- reading the dataclasses -------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _module_docs(module_name: str) -> dict[str, dict[str, str]]:
    """Class name -> field name -> docstring, for every class of the module's source."""
    tree = ast.parse(inspect.getsource(sys.modules[module_name]))
    docs: dict[str, dict[str, str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        fields = docs.setdefault(node.name, {})
        # An attribute docstring is the string statement right after the annotated assignment.
        for stmt, after in zip(node.body, node.body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                fields[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> docstring of the dataclass ``cls`` ('' where a field has none)."""
    found = _module_docs(cls.__module__).get(cls.__name__, {})
    return {f.name: found.get(f.name, "") for f in dataclasses.fields(cls)}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return None
    return _plain(value)


def _plain(value: Any) -> Any:
    """Tuples as lists, as the config holds them in YAML and JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def walk(cls: type = Config, prefix: str = "") -> list[Key]:
    """Every section and key under ``cls``, depth first, in declaration order."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out: list[Key] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.append(Key(prefix + f.name, tp, None, docs[f.name]))
            out.extend(walk(tp, f"{prefix}{f.name}."))
        else:
            out.append(Key(prefix + f.name, tp, _default(f), docs[f.name]))
    return out


def keys(cls: type = Config) -> list[Key]:
    """The leaf keys only: what a ``KEY=VALUE`` override can set."""
    return [k for k in walk(cls) if not k.is_section]


def sections(cls: type = Config) -> list[tuple[str, str]]:
    """(name, docstring) of the top-level sections, for ``--help``."""
    return [(k.key, k.doc) for k in walk(cls) if k.is_section and k.depth == 0]


def find(key: str) -> Key | None:
    """The leaf key named ``key``, if there is one."""
    return next((k for k in keys() if k.key == key), None)


# -- spelling types and values for people ------------------------------------------------


def type_name(tp: Any) -> str:
    """The annotation as a YAML user reads it: ``int``, ``'fp32' | 'bf16'``, ``[float, float]``, ``int | null``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in typing.get_args(tp)) + "]"
    if origin is list:
        return f"[{type_name(typing.get_args(tp)[0])}, ...]"
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        return f"{{{type_name(key_type)}: {type_name(value_type)}}}"
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def yaml_value(value: Any) -> str:
    """``value`` as it would be written in a config file or a ``KEY=VALUE`` override."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-len("...")].strip() if text.endswith("...") else text  # scalars end in a document marker


# -- the outputs ----------------------------------------------------------------------


def render_keys(cls: type = Config, width: int = 100) -> str:
    """``distgan config keys``: every dotted key with its type and default, its docstring below."""
    lines: list[str] = []
    for k in walk(cls):
        if k.is_section:
            if k.depth == 0 and lines:
                lines.append("")
            lines.append(f"{k.key}:  {_terminal(k.doc)}")
            continue
        lines.append(f"  {k.key}  ({type_name(k.type)}, default {yaml_value(k.default)})")
        lines.extend(textwrap.wrap(_terminal(k.doc), width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(lines) + "\n"


def _one_line(doc: str) -> str:
    return " ".join(doc.split())


def _terminal(doc: str) -> str:
    """One line, the docstrings' reStructuredText literals (double backquotes) written with single ones."""
    return _one_line(doc).replace("``", "`")


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, and a '|' that does not end the cell."""
    return _one_line(text).replace("|", "\\|")


def render_markdown(cls: type = Config) -> str:
    """docs/config.md: one heading per section, a table of its keys (type, default, description)."""
    out = ["# Config keys", "",
           "<!-- Generated from the docstrings of distgan/config/schema.py; do not edit. Regenerate with",
           f"     {REGENERATE} -->", "",
           "Every key a config file or a `KEY=VALUE` override can set, with its type and default. "
           "`distgan config keys` prints the same, `distgan config show CONFIG` a config resolved, and "
           "`distgan config schema --out distgan.schema.json` a JSON Schema that YAML editors use to complete "
           "and check config files (with the YAML language server: a first line "
           "`# yaml-language-server: $schema=distgan.schema.json`).", ""]
    for k in walk(cls):
        if not k.is_section:
            continue
        level = "#" * (2 + k.depth)
        out += [f"{level} `{k.key}`", "", _one_line(k.doc), ""]
        leaves = [c for c in walk(k.type, k.key + ".") if not c.is_section and c.depth == k.depth + 1]
        if not leaves:  # a section of sections (optim): its subsections follow
            continue
        out += ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
        for c in leaves:
            out.append(f"| `{c.key}` | `{_cell(type_name(c.type))}` | `{_cell(yaml_value(c.default))}` "
                       f"| {_cell(c.doc)} |")
        out.append("")
    return "\n".join(out)


def json_schema(cls: type = Config) -> dict:
    """A JSON Schema (draft 2020-12) of config files: keys, types, enums, defaults and descriptions.

    Ranges and registry names (model families, losses, ...) are left to ``distgan config show``: the schema
    is what an editor can check as one types.
    """
    top = _object_schema(cls)
    return {"$schema": JSON_SCHEMA_DRAFT, "title": "distgan config",
            "description": "A distgan config file (see docs/config.md).", **top}


def _object_schema(cls: type) -> dict:
    props = {}
    for k in walk(cls):
        if k.depth:
            continue  # nested keys are inside their section's schema
        prop = _type_schema(k.type)
        prop["description"] = _one_line(k.doc)  # editors wrap it themselves
        if not k.is_section:
            prop["default"] = k.default
        props[k.key] = prop
    return {"type": "object", "properties": props, "additionalProperties": False}


def _type_schema(tp: Any) -> dict:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _object_schema(tp)
    if origin in (Union, types.UnionType):
        return _union_schema(typing.get_args(tp))
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is tuple:
        items = [_type_schema(a) for a in typing.get_args(tp)]
        return {"type": "array", "prefixItems": items, "items": False, "minItems": len(items),
                "maxItems": len(items)}
    if origin is list:
        return {"type": "array", "items": _type_schema(typing.get_args(tp)[0])}
    if origin is dict:
        value_type = typing.get_args(tp)[1]
        return {"type": "object"} if value_type is Any else {"type": "object",
                                                              "additionalProperties": _type_schema(value_type)}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    if tp is Any:
        return {}
    raise TypeError(f"no JSON Schema for config field type {tp!r}")  # a new kind of field: teach it here


def _union_schema(options: tuple) -> dict:
    """``X | None`` as one ``type`` list where it can be (editors show it plainly), else ``anyOf``."""
    parts = [_type_schema(o) for o in options]
    if all(set(p) == {"type"} for p in parts):
        return {"type": [p["type"] for p in parts]}
    return {"anyOf": parts}


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
