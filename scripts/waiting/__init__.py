"""The waiting benchmark's parts (``scripts/bench_waiting.py`` runs them): ``matrix`` (shapes,
faults, strategies, seeded jobs, request counts), ``proxies`` (the receiver's faults),
``callers`` (the library and the pollers in each shape), ``cells`` (services and run order),
``report`` (figures, goals, markdown) and ``chart``."""
