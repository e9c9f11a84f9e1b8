"""The docs stay true to the code: every params key documented, README's commands are CI's."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.config import parse_params, to_flat_dict

REPO = Path(__file__).resolve().parents[1]


def _part_keys() -> set[str]:
    """Keys of every registered part, whatever type the defaults choose (``model.head.search_features``)."""
    import dataclasses

    from pipeline.config import ModelConfig, _registry

    keys = set()
    for f in dataclasses.fields(ModelConfig):
        kind = f.metadata.get("part") or f.metadata.get("parts")
        if kind is None:
            continue
        reg = _registry(kind)
        for name in reg.names():
            flat = to_flat_dict(reg.get(name).config(type=name))
            prefix = f"model.{f.name}." + (f"{name}." if "parts" in f.metadata else "")
            keys |= {prefix + k for k in flat if "parts" in f.metadata and k != "type" or "part" in f.metadata}
    return keys


def test_every_param_is_documented_and_no_stale_keys():
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", (REPO / "docs/params.md").read_text(), flags=re.M))
    actual = set(to_flat_dict(parse_params({}))) | _part_keys()
    assert actual - documented == set(), "params missing from docs/params.md"
    assert documented - actual == set(), "docs/params.md documents keys that do not exist"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci/run").read_text()
    test_cmd = "bash system-packages.sh && python -m pip install -r requirements-dev.txt && python -m pytest"
    demo_cmd = "bash system-packages.sh && python -m pip install -r requirements.txt && python -m dvc repro"
    assert test_cmd in readme and test_cmd in ci
    assert demo_cmd in readme


def test_requirements_admit_the_tested_torch():
    reqs = (REPO / "requirements.txt").read_text()
    assert re.search(r"^torch>=[\d.]+,<2\.15$", reqs, flags=re.M)
    assert re.search(r"^torchvision>=[\d.]+,<0\.30$", reqs, flags=re.M)


def _same_value(doc: str, value: object) -> bool:
    """A docs/params.md default cell read as YAML equals the code's default."""
    import yaml

    text = doc.strip().strip("`")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = text
    if isinstance(value, (list, tuple)):
        return isinstance(parsed, list) and len(parsed) == len(value) and all(
            _same_value(str(p), v) for p, v in zip(parsed, value))
    if isinstance(value, bool) or value is None:
        return parsed == value
    if isinstance(value, (int, float)):
        try:
            return float(parsed) == float(value)  # PyYAML reads 1e-6 (no dot) as text
        except (TypeError, ValueError):
            return False
    return str(parsed) == str(value)


def test_documented_defaults_are_the_code_defaults():
    # keys of the default parts only: a key of another type (model.head.search_features) has its own
    defaults = to_flat_dict(parse_params({}))
    rows = re.findall(r"^\| `([a-z0-9_.]+)` \| [^|]* \| ([^|]*) \|", (REPO / "docs/params.md").read_text(), flags=re.M)
    wrong = {key: (doc, defaults[key]) for key, doc in rows if key in defaults and not _same_value(doc, defaults[key])}
    assert wrong == {}, "docs/params.md defaults differ from pipeline/config.py (doc, code)"
