"""Callback URLs that must be refused with the allow-list at ``127.0.0.1/32``: parser-confusion
forms, numeric host forms, addresses outside the list. ``{p}`` is a port on the forbidden
127.0.0.2, ``{q}`` one on the allowed 127.0.0.1. Shared by the tests and the benchmarks."""

from __future__ import annotations

HOSTILE = [
    "http://127.0.0.2:{p}/x",  # plainly outside the allow-list
    "http://127.0.0.2:{p}\\@127.0.0.1:{q}/x",  # the validator and urllib3 read other hosts
    "http://127.0.0.2:{p}@127.0.0.1:{q}/x",
    "http://user@127.0.0.1:{q}/x",
    "http://user:pw@127.0.0.1:{q}/x",
    "http://@127.0.0.1:{q}/x",
    "http://127.0.0.1:{q}\\x",
    "http:\\\\127.0.0.1:{q}/x",
    "http://127.0.0.1:{q}/x y",
    "http://127.0.0.1:{q}/x\ty",
    "http://127.0.0.1:{q}/x\r\nHost: evil",
    " http://127.0.0.1:{q}/x",
    "http://127.0.0.1:{q}/x#frag",
    "http://127.0.0.1:0/x",
    "http://127.0.0.1:65536/x",
    "http://127.0.0.1:99999999999/x",
    "http://127.0.0.1:+80/x",
    "http://127.0.0.1:/x",
    "ftp://127.0.0.1:{q}/x",
    "file:///etc/passwd",
    "http:///x",
    "http://:80/x",
    "http://2130706434/x",  # decimal 127.0.0.2
    "http://0x7f000002/x",
    "http://0177.0.0.2/x",  # octal
    "http://127.1/x",
    "http://127.0.0.02/x",
    "http://[::ffff:127.0.0.2]:{p}/x",
    "http://[::ffff:7f00:2]/x",
    "http://[::1%25lo]/x",
    "http://[::1/x",
    "http://0.0.0.0:{q}/x",
    "http://127.0.0.1.:{q}/x",  # trailing dot
    "http://localhost.:{q}/x",
    "http://127%2E0%2E0%2E1:{q}/x",  # percent-encoded host
    "http://exa%6dple.com/x",
    "http://127.0.0.1:{q}/%zz",
    "http://ex_ample.com/x",
    "http://bücher.example/x",
    "HTTP://127.0.0.2:{p}/x",
    "http://127.0.0.1:{q}@127.0.0.2:{p}/x",
    "http://127.0.0.2:{p}#@127.0.0.1:{q}/x",
    "http://127.0.0.2:{p}?@127.0.0.1:{q}/x",
    "http://127.0.0.1:{q}%40127.0.0.2:{p}/x",
    "http://127.0.0.1:{q}:{p}/x",
    "http://127.0.0.1:0x50/x",
    "http://127.000.000.001:{q}/x",
    "http://0/x",
    "http://[::]:{q}/x",
    "http://[::1]:{q}/x",
    "http://127.0.0.1 :{q}/x",
    "http://127.0.0.1:{q}/\x00",
    "javascript:alert(1)",
    "//127.0.0.2:{p}/x",
    "http://127.0.0.2.invalid/x",
]
