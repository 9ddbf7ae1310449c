"""Where the client's settings come from: argument, environment, local set-up file, default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client_lib import AsyncTranslationClient, AuthenticationError, TranslationClient
from client_lib.config import resolve
from client_lib.errors import ConfigurationError
from client_lib.localsetup import data_home


def setup_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "local.json"
    path.write_text(json.dumps(values))
    return path


def test_argument_then_environment_then_file_then_default(tmp_path: Path) -> None:
    path = setup_file(tmp_path, server_url="http://file:1", api_key="from-file")
    env = {"VT_API_KEY": "from-env", "VT_CREDENTIALS_FILE": str(path)}
    config = resolve(environ=env)
    assert (config.server_url, config.source_of("server_url")) == ("http://file:1", str(path))
    assert (config.api_key, config.source_of("api_key")) == ("from-env", "VT_API_KEY")
    assert config.receiver_url == "http://127.0.0.1:8001"  # the local default
    assert config.source_of("receiver_url") == "default"
    assert resolve(api_key="arg", environ=env).api_key == "arg"
    env["VT_SERVER_URL"] = "http://env:2/"
    assert resolve(environ=env).server_url == "http://env:2"  # trailing slash dropped


def test_the_receiver_can_be_turned_off_explicitly(tmp_path: Path) -> None:
    env = {"VT_RECEIVER_URL": "http://env:3", "VT_CREDENTIALS_FILE": str(tmp_path / "x.json")}
    assert resolve(environ=env).receiver_url == "http://env:3"
    assert resolve(receiver_url=None, environ=env).receiver_url is None


def test_data_paths_come_from_vt_home_or_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VT_HOME", str(tmp_path / "home"))
    assert data_home() == tmp_path / "home"
    monkeypatch.delenv("VT_HOME")
    monkeypatch.chdir(tmp_path)
    assert data_home() == tmp_path / "var"
    assert resolve(environ={}).credentials_file == tmp_path / "var" / "local.json"


@pytest.mark.parametrize(
    ("url", "hint"),
    [("localhost:9000", "did you mean http://localhost:9000?"), ("ftp://x", "")],
)
def test_a_url_without_http_is_refused_with_a_hint(tmp_path: Path, url: str, hint: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve(base_url=url, credentials_file=tmp_path / "none.json", environ={})
    assert "must start with http:// or https://" in str(info.value) and hint in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_missing_api_key_says_what_was_looked_at(tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    client = TranslationClient(credentials_file=str(path), receiver_url=None)
    with pytest.raises(AuthenticationError) as info:
        client.get_job("job_1")
    message = str(info.value)
    assert "VT_API_KEY" in message and str(path) in message and "does not exist" in message
    assert (
        info.value.code == "missing_credentials" and not client.stats.requests  # never sent
    )


def test_the_client_reads_its_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VT_SERVER_URL", "http://server.env:9")
    monkeypatch.setenv("VT_API_KEY", "vt_env")
    monkeypatch.setenv("VT_RECEIVER_TOKEN", "tok")
    monkeypatch.setenv("VT_CREDENTIALS_FILE", str(tmp_path / "none.json"))
    client = TranslationClient()
    assert (client.base_url, client.api_key, client.receiver_token) == (
        "http://server.env:9",
        "vt_env",
        "tok",
    )


def test_the_callback_url_defaults_to_the_receivers_webhooks(tmp_path: Path) -> None:
    path = setup_file(tmp_path, receiver_url="http://file.example")
    config = resolve(credentials_file=path, environ={})
    assert (config.callback_url, config.source_of("callback_url")) == (
        "http://file.example/webhooks",
        "receiver_url",
    )
    env = {"VT_CALLBACK_URL": "https://hooks.example.com/in/"}
    config = resolve(credentials_file=path, environ=env)
    assert config.callback_url == "https://hooks.example.com/in"
    assert config.source_of("callback_url") == "VT_CALLBACK_URL"
    given = resolve(callback_url="http://arg:1/w", credentials_file=path, environ=env)
    assert (given.callback_url, given.source_of("callback_url")) == ("http://arg:1/w", "argument")
    # no receiver: no feed to learn from, so no webhook address of the client's own
    assert resolve(receiver_url=None, credentials_file=path, environ=env).callback_url is None


def test_a_callback_url_without_http_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="callback URL 'hooks:9' must start with http"):
        resolve(callback_url="hooks:9", credentials_file=tmp_path / "none.json", environ={})


def test_the_client_sends_its_jobs_webhooks_to_its_callback_url(tmp_path: Path) -> None:
    client = TranslationClient(
        api_key="k",
        receiver_url="http://10.0.0.5",
        callback_url="https://public.example.com/webhooks",
        credentials_file=str(tmp_path / "none.json"),
    )
    assert client.default_callback_url == "https://public.example.com/webhooks"
    aclient = AsyncTranslationClient(
        api_key="k",
        receiver_url="http://10.0.0.5",
        callback_url="https://public.example.com/webhooks",
        credentials_file=str(tmp_path / "none.json"),
    )
    assert aclient.default_callback_url == client.default_callback_url
