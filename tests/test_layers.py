"""Imports only run downward (docs/architecture.md): every import in the project, function-local ones too,
goes from a module to one at its own layer or below.

    core (convfill: prompt, engine, events, Talkers, Reasoners, turn log, NLI pair and judges, voice)
      <- app shell (convfill.ui)
        <- workbench (labeling) | training        (peers: neither imports the other)
          <- assembler (app.py)
            <- evaluation (convfill.eval: drives the assembled app, the Talkers and the judges)
              <- command-line entry points (convfill.cli, convfill.__main__)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RANK = {"core": 0, "ui": 1, "labeling": 2, "training": 2, "app": 3, "eval": 4, "entry": 5}


def layer(module: str) -> str | None:
    """The layer of a project module (None: not ours)."""
    top = module.split(".")[0]
    if top == "app":
        return "app"
    if top in ("labeling", "training"):
        return top
    if top != "convfill":
        return None
    second = module.split(".")[1] if "." in module else ""
    return {"ui": "ui", "eval": "eval", "cli": "entry", "__main__": "entry"}.get(second, "core")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from convfill import ui` imports convfill.ui: a name that is a module of another layer counts as it
            out += [(node.lineno, f"{base}.{a.name}" if layer(f"{base}.{a.name}") != layer(base) else base)
                    for a in node.names]
    return out


def sources() -> list[Path]:
    files = [ROOT / "app.py"]
    for pkg in ("convfill", "labeling", "training"):
        files += sorted((ROOT / pkg).rglob("*.py"))
    return files


def upward_imports() -> list[str]:
    bad = []
    for path in sources():
        mine = layer(module_name(path))
        for line, target in imports(path):
            theirs = layer(target)
            if theirs is None or theirs == mine:
                continue
            if RANK[theirs] > RANK[mine] or (RANK[theirs] == RANK[mine] and theirs != mine):
                bad.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {target} ({theirs})")
    return bad


def test_every_import_runs_downward():
    assert upward_imports() == []


@pytest.mark.parametrize("module, expected", [
    ("convfill.engine", "core"), ("convfill.turnlog.recorder", "core"), ("convfill.nli.judge", "core"),
    ("convfill.ui.chat", "ui"), ("labeling.store", "labeling"), ("training.finetune", "training"),
    ("app", "app"), ("convfill.eval.qa", "eval"), ("convfill.cli", "entry"), ("gradio", None)])
def test_layers_are_what_the_docs_say(module, expected):
    assert layer(module) == expected


def test_the_check_sees_upward_imports(tmp_path, monkeypatch):
    """Upward imports, function-local or relative, are caught (so the test above can fail)."""
    for pkg in ("convfill/talkers", "labeling", "training"):
        (tmp_path / pkg).mkdir(parents=True)
    (tmp_path / "app.py").write_text("import convfill.ui\n")
    (tmp_path / "convfill/__init__.py").write_text("")
    (tmp_path / "convfill/talkers/__init__.py").write_text("from ..events import Event\n")
    (tmp_path / "convfill/talkers/x.py").write_text(
        "def f():\n    from labeling.store import LabelStore\n    from ..ui import chat\n    from . import base\n")
    (tmp_path / "labeling/__init__.py").write_text("from training import finetune\n")
    (tmp_path / "training/__init__.py").write_text("from convfill.nli import LABELS\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert upward_imports() == [
        "convfill/talkers/x.py:2 (core) imports labeling.store (labeling)",
        "convfill/talkers/x.py:3 (core) imports convfill.ui (ui)",
        "labeling/__init__.py:1 (labeling) imports training (training)"]
