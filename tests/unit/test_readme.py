"""The README stays true: its configuration tables list every option each service has."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from callback_receiver.__main__ import main as receiver_main
from translation_server.__main__ import main as server_main

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(title)
    end = README.index("\n\n**", start + 1) if "\n\n**" in README[start + 1 :] else len(README)
    return README[start:end]


def documented(title: str) -> set[str]:
    return set(re.findall(r"`(--[a-z0-9-]+)", section(title)))


@pytest.mark.parametrize(
    ("title", "command"),
    [
        ("**Translation server**", server_main),
        ("**Callback receiver**", receiver_main),
    ],
)
def test_every_option_is_documented(title: str, command: click.Command) -> None:
    flags = {
        opt
        for p in command.params
        if isinstance(p, click.Option)
        for opt in p.opts + p.secondary_opts
        if opt != "--help"
    }
    assert flags - documented(title) == set()
    assert documented(title) - flags == set()


def test_every_make_target_named_in_the_readme_exists() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z-]+)", README))
    assert named <= targets and {"run", "test"} <= named
