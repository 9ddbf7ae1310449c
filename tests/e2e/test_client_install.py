"""The client installed alone, as a user would: a fresh venv, ``pip install`` of the project
without the server extra, the README's snippet run from another folder, configured only by
environment variables, against real services."""

from __future__ import annotations

import os
import re
import subprocess
import venv
from pathlib import Path

import pytest

from tests.e2e.servers import Stack, start_stack

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def readme_snippet() -> str:
    """The README's first Python block, with short pinned jobs."""
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    return code.group(1).replace(
        "create_job(priority=5)", 'create_job(priority=5, simulate={"duration_s": 0.5})'
    )


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("client-venv")
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    return python


def test_the_client_installs_without_the_server_stack(client_venv: Path) -> None:
    probe = (
        "import importlib.util, sys, client_lib;"
        "from client_lib import TranslationClient, AsyncTranslationClient;"
        "print([m for m in ('flask', 'waitress', 'sqlalchemy', 'prometheus_client')"
        " if importlib.util.find_spec(m) or m in sys.modules])"
    )
    out = subprocess.run(
        [str(client_venv), "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_readme_snippet_runs_from_another_folder_on_environment_alone(
    client_venv: Path, tmp_path: Path
) -> None:
    services = tmp_path / "services"
    services.mkdir()
    stack: Stack = start_stack(services)
    try:
        client = stack.client()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "VT_SERVER_URL": stack.server.url,
            "VT_RECEIVER_URL": stack.receiver.url,
            "VT_API_KEY": client.api_key or "",
            "VT_RECEIVER_TOKEN": client.receiver_token or "",
        }
        assert env["VT_RECEIVER_TOKEN"]  # the feed is never open
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        script = elsewhere / "snippet.py"
        script.write_text(readme_snippet())
        run = subprocess.run(
            [str(client_venv), str(script)],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        ended = re.findall(r"^job_\S+ (completed|error)$", run.stdout, re.M)
        assert len(ended) == 10, run.stdout
        assert not (elsewhere / "var").exists()  # nothing written beside the caller's files
    finally:
        stack.stop()
