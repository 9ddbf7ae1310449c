"""Where a client's settings come from: arguments, then the environment, then the local
set-up file, then defaults; the same for the library and the ``vt`` CLI.

    argument          environment            local set-up file      default
    base_url          VT_SERVER_URL          server_url             http://127.0.0.1:8000
    receiver_url      VT_RECEIVER_URL        receiver_url           http://127.0.0.1:8001
    callback_url      VT_CALLBACK_URL        callback_url           {receiver_url}/webhooks
    api_key           VT_API_KEY             api_key                none
    receiver_token    VT_RECEIVER_TOKEN      receiver_token         none
    admin_token       VT_ADMIN_TOKEN         admin_token            none
    credentials_file  VT_CREDENTIALS_FILE    -                      $VT_HOME/local.json, else
                                                                    ./var/local.json

``callback_url`` is where the server sends this client's webhooks: the receiver's own
``/webhooks`` unless the receiver is reached there by another address (a tunnel, a public
load balancer) than the one the client reads its feed from. With no receiver there is none.

This module is the only one of the SDK that reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .localsetup import DEFAULT_RECEIVER_URL, DEFAULT_SERVER_URL, data_home, load_local_values

UNSET: Any = object()

_ENV = {
    "server_url": "VT_SERVER_URL",
    "receiver_url": "VT_RECEIVER_URL",
    "callback_url": "VT_CALLBACK_URL",
    "api_key": "VT_API_KEY",
    "receiver_token": "VT_RECEIVER_TOKEN",
    "admin_token": "VT_ADMIN_TOKEN",
}
_DEFAULTS = {"server_url": DEFAULT_SERVER_URL, "receiver_url": DEFAULT_RECEIVER_URL}


@dataclasses.dataclass(frozen=True, slots=True)
class ClientConfig:
    """A client's resolved settings, and where each came from."""

    server_url: str
    receiver_url: str | None
    api_key: str | None
    receiver_token: str | None
    admin_token: str | None
    credentials_file: Path
    callback_url: str | None
    sources: Mapping[str, str]

    def missing_api_key(self) -> str:
        """What was looked at for an API key, for an error that says so."""
        found = "exists but has none" if self.credentials_file.exists() else "does not exist"
        return (
            "no API key: pass api_key=, set VT_API_KEY, or create the local set-up with "
            f"`make run` (looked in {self.credentials_file}, which {found})"
        )

    def source_of(self, name: str) -> str:
        """Where a setting came from (argument, an environment variable, the file, default)."""
        return self.sources.get(name, "default")


def resolve(
    *,
    base_url: str | None = None,
    receiver_url: str | None = UNSET,
    api_key: str | None = None,
    receiver_token: str | None = None,
    admin_token: str | None = None,
    credentials_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    callback_url: str | None = None,
) -> ClientConfig:
    """Settle every setting; ``receiver_url=None`` explicitly means no receiver."""
    env = os.environ if environ is None else environ
    path = Path(credentials_file or env.get("VT_CREDENTIALS_FILE") or data_home() / "local.json")
    local = load_local_values(path)
    given = {
        "server_url": base_url,
        "receiver_url": receiver_url,
        "api_key": api_key,
        "receiver_token": receiver_token,
        "admin_token": admin_token,
        "callback_url": callback_url,
    }
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, explicit in given.items():
        for source, value in (
            ("argument", explicit),
            (_ENV[name], env.get(_ENV[name]) or UNSET),
            (str(path), local.get(name, UNSET)),
            ("default", _DEFAULTS.get(name)),
        ):
            if value is not UNSET and value is not None:
                values[name], sources[name] = value, source
                break
        else:
            values[name] = None
    if receiver_url is None:
        values["receiver_url"], sources["receiver_url"] = None, "argument"
    values["server_url"] = checked_url("server URL", values["server_url"])
    if values["receiver_url"]:
        values["receiver_url"] = checked_url("receiver URL", values["receiver_url"])
    if not values["receiver_url"]:  # no feed to learn from: no webhooks of this client's own
        values["callback_url"] = None
    elif values["callback_url"]:
        values["callback_url"] = checked_url("callback URL", values["callback_url"])
    else:
        values["callback_url"], sources["callback_url"] = (
            values["receiver_url"] + "/webhooks",
            ("receiver_url"),
        )
    return ClientConfig(credentials_file=path, sources=sources, **values)


def checked_url(what: str, url: str) -> str:
    """An http(s) base URL without its trailing slash; ConfigurationError with a hint if not."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        hint = f": did you mean http://{url}?" if "://" not in url else ""
        raise ConfigurationError(f"{what} {url!r} must start with http:// or https://{hint}")
    return url.strip().rstrip("/")
