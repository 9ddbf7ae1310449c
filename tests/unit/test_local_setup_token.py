"""The local set-up's feed token: generated once, kept, owner-only, found by the client."""

from __future__ import annotations

import stat
from pathlib import Path

from client_lib.config import resolve
from client_lib.localsetup import LocalSetup, ensure_receiver_token, load_local_setup


def test_a_token_is_generated_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "var" / "local.json"
    token = ensure_receiver_token(path)
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_receiver_token(path) == token
    assert load_local_setup(path).receiver_token == token


def test_the_other_settings_of_the_file_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "local.json"
    LocalSetup(api_key="vt_key", webhook_secret="whsec_x").write(path)
    token = ensure_receiver_token(path)
    setup = load_local_setup(path)
    assert (setup.api_key, setup.webhook_secret, setup.receiver_token) == (
        "vt_key",
        "whsec_x",
        token,
    )


def test_the_client_takes_the_token_from_the_file_unless_told_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "local.json"
    token = ensure_receiver_token(path)
    assert resolve(credentials_file=path, environ={}).receiver_token == token
    env = {"VT_RECEIVER_TOKEN": "from-the-environment"}
    assert resolve(credentials_file=path, environ=env).receiver_token == "from-the-environment"
    given = resolve(credentials_file=path, receiver_token="given", environ=env)
    assert given.receiver_token == "given"
