"""Where the local set-up (``make run``) writes the demo credentials, and how to read them.

The translation server writes this file once when it creates the demo client; the callback
receiver reads the webhook secret and its feed token from it and the client library reads
URLs, the API key and the feed token, so nobody copies keys by hand. It is a local-development
convenience: production callers pass their credentials explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from pathlib import Path
from typing import Any


def data_home() -> Path:
    """Where local data lives: ``$VT_HOME``, else ``var/`` in the working directory (never the
    package's own folder, which an install puts in site-packages)."""
    return Path(os.environ.get("VT_HOME") or Path.cwd() / "var").absolute()


# As the process found it at start-up (the services' option defaults show it).
DATA_HOME = data_home()
DEFAULT_CREDENTIALS_PATH = DATA_HOME / "local.json"
DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
DEFAULT_RECEIVER_URL = "http://127.0.0.1:8001"


@dataclasses.dataclass(frozen=True, slots=True)
class LocalSetup:
    """The demo client's credentials and the two local services' addresses."""

    server_url: str = DEFAULT_SERVER_URL
    receiver_url: str = DEFAULT_RECEIVER_URL
    client_id: str | None = None
    api_key: str | None = None
    webhook_secret: str | None = None
    admin_token: str | None = None
    receiver_token: str | None = None
    # other local clients' secrets (``vt clients create``): the local receiver accepts them too
    webhook_secrets: tuple[str, ...] = ()

    @property
    def callback_url(self) -> str:
        """The receiver's webhook endpoint, the default ``callback_url`` for new jobs."""
        return self.receiver_url.rstrip("/") + "/webhooks"

    def write(self, path: Path) -> None:
        """Write atomically, readable by the owner only (it holds secrets)."""
        make_private_dir(path.parent)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(dataclasses.asdict(self), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)


def load_local_values(path: Path) -> dict[str, Any]:
    """The settings the local set-up file holds (none when it is missing or unreadable)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    fields = {f.name for f in dataclasses.fields(LocalSetup)}
    return {k: v for k, v in raw.items() if k in fields and v} if isinstance(raw, dict) else {}


def load_local_setup(path: str | os.PathLike[str] | None = None) -> LocalSetup:
    """Read the local set-up file; a missing file gives the defaults with no credentials."""
    target = Path(path) if path is not None else data_home() / "local.json"
    try:
        raw = json.loads(target.read_text())
    except FileNotFoundError:
        return LocalSetup()
    fields = {f.name for f in dataclasses.fields(LocalSetup)}
    values = {k: v for k, v in raw.items() if k in fields}
    values["webhook_secrets"] = tuple(values.get("webhook_secrets") or ())
    return LocalSetup(**values)


SECRETS_KEPT = 100


def remember_secret(path: Path, secret: str) -> None:
    """Keep another local client's webhook secret in the set-up file, so that the local
    receiver, which reads it, accepts that client's webhooks too (the newest 100 are kept)."""
    setup = load_local_setup(path)
    kept = [s for s in setup.webhook_secrets if s != secret]
    fresh = dataclasses.replace(setup, webhook_secrets=tuple([*kept, secret][-SECRETS_KEPT:]))
    fresh.write(path)


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def ensure_receiver_token(path: Path) -> str:
    """The set-up file's feed token for the local receiver, generated and written (owner-only)
    when it holds none yet."""
    setup = load_local_setup(path)
    if setup.receiver_token:
        return setup.receiver_token
    token = new_token()
    dataclasses.replace(setup, receiver_token=token).write(path)
    return token


def keep_private() -> None:
    """From now on this process creates files and folders for its owner only (0600, 0700):
    the databases (with SQLite's -wal and -shm files), the set-up file and the data folder
    hold secrets. Each service calls it first thing; the data folder, if it exists already,
    is made owner-only too."""
    os.umask(0o077)
    home = data_home()
    if home.is_dir() and home.stat().st_uid == os.getuid():
        home.chmod(0o700)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) owner-only; the data folder itself, when that is
    what it is, is made owner-only even if it existed."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.absolute() == data_home():
        path.chmod(0o700)


def secret_option(value: str | None, file: str | os.PathLike[str] | None, name: str) -> str | None:
    """A secret option given as a value (``--name``, or its variable) or as a file holding it
    (``--name-file``, or its variable): the file keeps it out of the process list and the
    environment. ValueError naming the option when both are given, or the file is unreadable
    or empty."""
    if file is None or str(file) == "":
        return value or None
    if value:
        raise ValueError(f"--{name} and --{name}-file: give one, not both")
    try:
        text = Path(file).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--{name}-file: cannot read {file} ({type(exc).__name__})") from None
    if not text:
        raise ValueError(f"--{name}-file: {file} is empty")
    return text


def write_ready_file(path: Path, url: str, port: int) -> None:
    """Tell a parent process where a service listens, ``{url, port, pid}``, atomically: the
    parent (a test, a benchmark, ``make run``) polls for the file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "port": port, "pid": os.getpid()}))
    os.replace(tmp, path)
