"""The simulated coreos etcd-operator v0.9.4 (archived 2020): whether its pod can run.

What the real one does at start (FACTS.md): unless run with ``-create-crd=false`` it creates
its CRD ``etcdclusters.etcd.database.coreos.com`` through ``apiextensions.k8s.io/v1beta1``.
That API was removed in Kubernetes 1.22, so on K3s 1.24+ the request fails and the process
exits fatally; the kubelet restarts it into CrashLoopBackOff and its Deployment never becomes
available. It runs when a ``v1`` CRD (kind EtcdCluster, version v1beta2) was applied first
and the operator was started with ``-create-crd=false``. With ``-create-crd=false`` and no
CRD it cannot list EtcdClusters and exits too. (Its EtcdCluster members would then hang on
``tolerate-unready-endpoints``; this controller does not simulate EtcdClusters at all.)

Recognised by image: ``quay.io/coreos/etcd-operator:v0.9.4`` or any image ending in
``etcd-operator:<tag>``. This module is a kubelet program (kubelet.add_program): at each start
of the container it says what the process logs and whether it exits; it creates no objects.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .kubelet import Run

CRD_NAME = "etcdclusters.etcd.database.coreos.com"
IMAGE = re.compile(r"(^|/)etcd-operator:[^/]+$")


def _ts() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def crd_ready(double) -> bool:
    """The v1 CRD the operator needs: kind EtcdCluster, served version v1beta2."""
    crd = double.get("apiextensions.k8s.io/customresourcedefinitions", "", CRD_NAME)
    if crd is None:
        return False
    spec = crd.get("spec") or {}
    served = {v.get("name") for v in spec.get("versions") or [] if v.get("served", True)}
    return (spec.get("names") or {}).get("kind") == "EtcdCluster" and "v1beta2" in served


def has_v1beta1_crd_api(double) -> bool:
    major, minor = (double.config.server_version.split(".") + ["0"])[:2]
    return (int(major), int(minor)) < (1, 22)


def verdict(double, container: dict) -> tuple[bool, list[str]]:
    """(runs, log lines) for an etcd-operator container in this cluster."""
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    no_create = any(a in ("-create-crd=false", "--create-crd=false") for a in argv)
    t = _ts()
    head = [f'time="{t}" level=info msg="etcd-operator Version: 0.9.4"',
            f'time="{t}" level=info msg="Git SHA: c8a1c64"',
            f'time="{t}" level=info msg="Go Version: go1.11.5"',
            f'time="{t}" level=info msg="Go OS/Arch: linux/amd64"']
    if not no_create and not has_v1beta1_crd_api(double):
        return False, head + [
            f'time="{t}" level=info msg="Event(v1.ObjectReference{{Kind:\\"Endpoints\\", Namespace:\\"default\\", '
            f'Name:\\"etcd-operator\\"}}): type: \'Normal\' reason: \'LeaderElection\' became leader"',
            f'time="{t}" level=fatal msg="the server could not find the requested resource '
            f'(post customresourcedefinitions.apiextensions.k8s.io)"']
    if no_create and not crd_ready(double):
        return False, head + [
            f'time="{t}" level=fatal msg="the server could not find the requested resource '
            f'(get etcdclusters.etcd.database.coreos.com)"']
    return True, head + [f'time="{t}" level=info msg="start running..." cluster-name=etcd-operator pkg=controller']


def etcd_operator(double, pod: dict, container: dict, env: dict) -> Run | None:
    """Kubelet program: judged again at every (re)start, so a CRD applied later lets it recover."""
    if not IMAGE.search(str(container.get("image", ""))):
        return None
    runs, lines = verdict(double, container)
    return Run(lines, None if runs else 1)     # logrus Fatal exits 1
