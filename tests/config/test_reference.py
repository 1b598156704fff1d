"""The key reference read off the config's dataclasses: ``distgan config keys``, the JSON Schema for editors,
and docs/config.md, which must match what the dataclasses say today."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml

from distgan.cli import main as cli_main
from distgan.config import Config, TrainConfig
from distgan.config import reference

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def every_field(cls: type = Config, prefix: str = ""):
    """(dotted key, owning dataclass, field name, is a section), found independently of ``reference.walk``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section = dataclasses.is_dataclass(hints[f.name])
        yield prefix + f.name, cls, f.name, section
        if section:
            yield from every_field(hints[f.name], f"{prefix}{f.name}.")


def test_every_field_has_a_docstring_read_from_the_source():
    missing = [key for key, cls, name, _ in every_field() if not reference.field_docs(cls)[name].strip()]
    assert not missing, f"fields without a docstring below them in distgan/config/schema.py: {missing}"
    # Read from the source, not made up: multi-line docstrings come back whole and dedented.
    docs = reference.field_docs(TrainConfig)
    assert docs["steps"] == "Generator updates in total (each preceded by ``n_critic`` D updates)."
    assert docs["collective_timeout_s"].endswith("raise it for very large evaluation sets. At most a day.")
    assert "\n    " not in docs["collective_timeout_s"]


def test_keys_lists_every_key_with_type_default_and_docstring(capsys):
    assert cli_main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for key, cls, name, section in every_field():
        if section:
            continue
        header = next((i for i, line in enumerate(lines) if line.startswith(f"  {key}  (")), None)
        assert header is not None, f"{key} is not in `distgan config keys`"
        first_words = " ".join(reference.field_docs(cls)[name].replace("``", "`").split()[:4])
        assert first_words in lines[header + 1], (key, lines[header + 1])
    assert "  train.steps  (int, default 1500)" in lines
    assert "  deepspeed.precision  ('fp32' | 'bf16' | 'fp16', default fp32)" in lines
    assert "  scaling.use_gpu  (bool | 'auto', default auto)" in lines
    assert "  deepspeed.g.zero_stage  (int | null, default null)" in lines
    assert "  optim.g.betas  ([float, float], default [0.5, 0.999])" in lines
    assert "  loss.perceptual.layers  ({str: float}, default {conv5_4: 1.0})" in lines


@pytest.fixture(scope="module")
def validator():
    schema = reference.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_the_schema_accepts_the_shipped_configs(validator, path):
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert not errors


def test_the_schema_accepts_the_defaults_and_nulls(validator):
    assert not list(validator.iter_errors(Config().to_dict()))
    assert validator.is_valid({"train": {"init_from": None}, "data": {"name": None, "path": "/data"}})


@pytest.mark.parametrize("config, path, needle", [
    ({"train": {"stepz": 3}}, ["train"], "'stepz' was unexpected"),
    ({"deepspeed": {"g": {"zero_stag": 1}}}, ["deepspeed", "g"], "'zero_stag' was unexpected"),
    ({"tranning": {}}, [], "'tranning' was unexpected"),
    ({"train": {"steps": "many"}}, ["train", "steps"], "is not of type 'integer'"),
    ({"train": {"steps": 2.5}}, ["train", "steps"], "is not of type 'integer'"),
    ({"deepspeed": {"precision": "fp8"}}, ["deepspeed", "precision"], "is not one of"),
    ({"scaling": {"use_gpu": "yes"}}, ["scaling", "use_gpu"], "is not valid under any of the given schemas"),
    ({"optim": {"g": {"betas": [0.5]}}}, ["optim", "g", "betas"], "is too short"),
    ({"optim": {"g": {"betas": [0.5, 0.9, 0.99]}}}, ["optim", "g", "betas"], "is too long"),
    ({"loss": {"perceptual": {"layers": {"conv5_4": "high"}}}}, ["loss", "perceptual", "layers", "conv5_4"],
     "is not of type 'number'"),
    ({"train": {"steps": None}}, ["train", "steps"], "is not of type 'integer'"),
])
def test_the_schema_rejects_what_the_loader_rejects(validator, config, path, needle):
    errors = list(validator.iter_errors(config))
    assert errors and all(list(e.absolute_path) == path for e in errors), [e.message for e in errors]
    assert any(needle in e.message for e in errors), [e.message for e in errors]
    with pytest.raises(ValueError):  # ConfigError: the loader agrees
        Config.from_dict(config)


def test_schema_command_writes_the_schema(tmp_path, capsys):
    out = tmp_path / "distgan.schema.json"
    assert cli_main(["config", "schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == reference.json_schema()
    assert cli_main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == reference.json_schema()


def test_docs_config_md_is_fresh():
    docs = ROOT / "docs" / "config.md"
    expected = reference.render_markdown()
    assert docs.is_file() and docs.read_text() == expected, (
        f"docs/config.md is out of date with the docstrings of distgan/config/schema.py; regenerate it with "
        f"`{reference.REGENERATE}` (from the repository root)")


def test_docs_config_md_has_a_row_per_key():
    text = reference.render_markdown()
    for key, _, _, section in every_field():
        if section:
            assert re.search(rf"^#+ `{re.escape(key)}`$", text, re.M), f"no heading for section {key}"
        else:
            assert f"| `{key}` |" in text, f"no row for {key}"
