"""The package's imports follow its layers (scripts/import_graph.py): no circle, no upward or sideways import, no
private import across packages."""

from __future__ import annotations

import import_graph


def test_the_import_graph_follows_the_layers() -> None:
    assert import_graph.problems() == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch) -> None:
    """A checker that cannot fail proves nothing: a config module importing the trainer is reported."""
    package = tmp_path / "urpo_kit"
    (package / "config").mkdir(parents=True)
    (package / "train").mkdir()
    (package / "__init__.py").write_text("")
    (package / "config" / "__init__.py").write_text("from urpo_kit.train import _private\n")
    (package / "train" / "__init__.py").write_text("from urpo_kit.config import x\n")
    monkeypatch.setattr(import_graph, "PACKAGE", package)
    found = import_graph.problems()
    assert any("upward import urpo_kit.config -> urpo_kit.train" in p for p in found)
    assert any("private import of _private" in p for p in found)
    assert any(p.startswith("circle: urpo_kit.config -> urpo_kit.train") for p in found)
