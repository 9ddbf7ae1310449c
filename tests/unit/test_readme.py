"""The README stays true: the make targets and documents it names exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_make_target_named_in_the_readme_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    named = {word for run in re.findall(r"`make ((?:[a-z-]+ ?)+)", README) for word in run.split()}
    assert named <= targets and {"run", "test", "lint", "typecheck"} <= named


def test_every_module_named_in_the_readme_exists() -> None:
    for path in set(
        re.findall(r"`((?:client_lib|translation_server|callback_receiver)/[\w/.]+)`", README)
    ):
        assert (ROOT / path).exists(), path


def test_the_readme_is_short() -> None:
    assert len(README.split()) <= 2000
