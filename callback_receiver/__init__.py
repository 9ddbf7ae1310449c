"""The callback receiver: verifies, stores and de-duplicates webhooks, and serves a change feed.

It stands in for the user's own backend (../shared/API.md section 4). Modules:

- ``config``: the frozen ``Settings`` and the command-line options that build them;
- ``problems``: RFC 9457 problem+json errors;
- ``signatures``: Standard Webhooks verification and the set of accepted secrets;
- ``store``: SQLAlchemy Core tables (events, job states, receipts);
- ``feed``: the condition variable that wakes long-polls when an event is stored;
- ``inbox``: ``POST /webhooks`` from raw bytes to a stored event;
- ``api`` and ``page``: the HTTP routes and the HTML page; ``app``: ``create_app(settings)``.

It imports ``client_lib``'s wire models only, never the translation server.
"""
