"""The steps of vtflow's flows, one module per domain.

Each module holds pure builders and parsers (unit-tested without I/O) and thin Prefect tasks
that do one thing with one client. Tasks retry transient errors only.
"""
