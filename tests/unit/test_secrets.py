"""Secret options: each also read from a file (out of ``ps`` and the environment), and the
local set-up's files created owner-only."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from callback_receiver.__main__ import _settings as receiver_settings
from callback_receiver.__main__ import main as receiver_main
from client_lib.localsetup import LocalSetup, keep_private, make_private_dir, secret_option
from tests.receiver_support import OTHER_SECRET, SECRET
from translation_server.config import options, settings_from_options

TOKEN = "a-token-kept-in-a-file-0123456789"


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_secret_comes_from_its_value_or_its_file(tmp_path: Path) -> None:
    assert secret_option("given", None, "admin-token") == "given"
    assert secret_option(None, None, "admin-token") is None
    assert secret_option(None, _file(tmp_path, "t", f"{TOKEN}\n"), "admin-token") == TOKEN
    for value, file, message in [
        ("given", _file(tmp_path, "t", TOKEN), "give one, not both"),
        (None, _file(tmp_path, "empty", "\n"), "is empty"),
        (None, tmp_path / "missing", "cannot read"),
    ]:
        with pytest.raises(ValueError, match=message) as caught:
            secret_option(value, file, "admin-token")
        assert "--admin-token" in str(caught.value) and TOKEN not in str(caught.value)


def _server_settings(args: list[str], env: dict[str, str] | None = None) -> Any:
    seen: dict[str, Any] = {}

    @click.command(context_settings={"auto_envvar_prefix": "VT"})
    @options
    def show(**values: Any) -> None:
        seen["settings"] = settings_from_options(**values)

    result = CliRunner().invoke(show, args, env=env)
    return seen.get("settings") or result


def test_the_admin_token_from_a_file_or_its_variable(tmp_path: Path) -> None:
    path = _file(tmp_path, "admin", TOKEN + "\n")
    assert _server_settings(["--admin-token-file", str(path)]).admin_token == TOKEN
    from_env = _server_settings([], env={"VT_ADMIN_TOKEN_FILE": str(path)})
    assert from_env.admin_token == TOKEN
    both = _server_settings(["--admin-token", "x", "--admin-token-file", str(path)])
    assert both.exit_code == 2 and "give one, not both" in both.output


def _receiver(args: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ctx = receiver_main.make_context("callback_receiver", args)
    params = dict(ctx.params)
    params.pop("log_level")
    return receiver_settings(params)


def test_the_receivers_secrets_and_feed_token_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = _file(tmp_path, "secrets", f"{SECRET}\n{OTHER_SECRET}\n")
    token = _file(tmp_path, "token", TOKEN)
    db = ["--database-url", f"sqlite:///{tmp_path / 'r.db'}", "--credentials-file", ""]
    got = _receiver(
        [*db, "--secret-file", str(secrets), "--feed-token-file", str(token)], monkeypatch
    )
    assert got.secrets == (SECRET, OTHER_SECRET) and got.feed_token == TOKEN
    got = _receiver(
        [*db, "--secret", SECRET],
        monkeypatch,
        VT_WEBHOOK_SECRETS_FILE=str(_file(tmp_path, "s2", OTHER_SECRET)),
        VT_RECEIVER_FEED_TOKEN_FILE=str(token),
    )
    assert got.secrets == (SECRET, OTHER_SECRET) and got.feed_token == TOKEN
    with pytest.raises(click.UsageError, match="secret #1") as caught:
        _receiver([*db, "--secret-file", str(_file(tmp_path, "bad", "whsec_!!"))], monkeypatch)
    assert "whsec_!!" not in str(caught.value)  # a secret is never echoed


@pytest.fixture
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This process's umask as a service sets it, restored afterwards; its data folder
    (``VT_HOME``) made beforehand with wider rights."""
    home = tmp_path / "data"
    home.mkdir()
    home.chmod(0o755)
    monkeypatch.setenv("VT_HOME", str(home))
    before = os.umask(0o022)
    os.umask(before)
    keep_private()
    yield tmp_path
    os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_set_up_file_and_its_folder_are_owner_only(private: Path) -> None:
    path = private / "home" / "var" / "local.json"
    LocalSetup(api_key="vt_x").write(path)
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert _mode(path.parent.parent) == 0o700
    made_by_hand = private / "shared"
    made_by_hand.mkdir(mode=0o755)
    made_by_hand.chmod(0o755)
    make_private_dir(made_by_hand)  # not the data folder: left as its owner made it
    assert _mode(made_by_hand) == 0o755
    (private / "new.db").write_bytes(b"")  # what SQLite creates, under the service's umask
    assert _mode(private / "new.db") == 0o600
    assert _mode(private / "data") == 0o700  # the data folder, made owner-only at start
