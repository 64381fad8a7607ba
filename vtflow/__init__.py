"""vtflow: deploy and operate Vitess on a K3s cluster with Prefect 3 flows.

This package holds what the flows stand on: the project's errors, one client module per
external system (``ssh``, ``mysql``, ``kube``), the local stack behind ``make up`` and the
command line. Flows live in ``flows/``, their steps in ``tasks/``, configuration in ``blocks/``.
"""

__version__ = "0.1.0"
