"""Prefect flows. Each flow reads as the list of its steps; the steps live in ``tasks/``."""
