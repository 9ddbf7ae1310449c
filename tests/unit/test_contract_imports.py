"""The services import the wire contract's modules only: never requests, nor the clients."""

from __future__ import annotations

import subprocess
import sys


def test_importing_both_services_loads_no_client_code() -> None:
    probe = (
        "import sys, translation_server.app, callback_receiver.app, client_lib.webhooks;"
        "print(sorted(m for m in ('requests', 'client_lib.client', 'client_lib.waiting',"
        " 'client_lib.transport', 'client_lib.cli') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_still_offers_every_public_name() -> None:
    import client_lib

    for name in client_lib.__all__:
        assert getattr(client_lib, name).__name__ == name
    assert "TranslationClient" in dir(client_lib)
