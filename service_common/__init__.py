"""What the two services share to serve HTTP, written once: problem+json answers and strict
JSON (``problems``), request ids, the access log and request metrics (``observe``), waitress
configured through its public settings and stopped on a signal (``serving``), and the
database engine (``engine``).

The wire contract itself (statuses, models, problem shapes, signing) lives in ``client_lib``'s
contract modules, which the client shares too; this package is the services' alone and needs
the ``[server]`` extra (Flask, waitress, SQLAlchemy).
"""
