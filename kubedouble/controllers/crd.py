"""CustomResourceDefinitions: report them NamesAccepted and Established, as the real one does.

Registering the kinds in discovery and routing happens synchronously when the CRD is written
(``KubeDouble`` listens to the store), so a client that applies a CRD and then its first
object does not race this controller; this one only writes the status conditions.
"""

from __future__ import annotations

from ..store import now_rfc3339
from . import Controller
from .common import set_condition


class CRDController(Controller):
    name = "apiextensions-controller"
    watches = ("apiextensions.k8s.io/customresourcedefinitions",)

    def reconcile(self, double, crd: dict) -> None:
        spec = crd.get("spec") or {}
        names = dict(spec.get("names") or {})
        names.setdefault("singular", names.get("kind", "").lower())
        names.setdefault("listKind", names.get("kind", "") + "List")
        stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]

        def establish(c):
            now = now_rfc3339()
            st = c.setdefault("status", {})
            conds = set_condition(st.get("conditions"), "NamesAccepted", "True", "NoConflicts", "no conflicts found", now)
            conds = set_condition(conds, "Established", "True", "InitialNamesAccepted", "the initial names have been accepted", now)
            st["conditions"] = conds
            st["acceptedNames"] = names
            st["storedVersions"] = sorted(set(st.get("storedVersions") or []) | set(stored))
        double.mutate("apiextensions.k8s.io/customresourcedefinitions", "", crd["metadata"]["name"], establish)
