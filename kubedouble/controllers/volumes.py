"""The PersistentVolumeClaim binder and provisioner (K3s local-path style).

A claim binds (a PV ``pvc-<uid>`` is provisioned, ``spec.volumeName`` set, both Bound) when its
StorageClass exists: at once for ``Immediate`` classes, after the scheduler picked a node (the
selected-node annotation) for ``WaitForFirstConsumer`` ones such as K3s's ``local-path``. A
claim without a class (no default class existed when it was created) stays Pending with a
FailedBinding event, as with no dynamic provisioning; a claim naming a missing class gets
ProvisioningFailed. Deleting a claim releases its PV, which is deleted when its reclaim policy
is Delete (local-path's) and stays Released when it is Retain.
"""

from __future__ import annotations

from ..admission import DEFAULT_SC_ANNOTATION
from ..store import now_rfc3339
from . import Controller
from .scheduler import SELECTED_NODE

LOCAL_PATH = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "local-path", "annotations": {DEFAULT_SC_ANNOTATION: "true"}},
    "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
    "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": False,
}


class VolumeBinder(Controller):
    name = "persistentvolume-controller"
    watches = ("persistentvolumeclaims", "storage.k8s.io/storageclasses")

    def start(self, double) -> None:
        if double.config.local_path_storage and double.get("storage.k8s.io/storageclasses", "", "local-path") is None:
            double.create("storage.k8s.io/storageclasses", dict(LOCAL_PATH))

    def handle(self, double, change) -> None:
        if change.resource == "storageclasses":
            for pvc in double.list("persistentvolumeclaims"):
                self.reconcile(double, pvc)
        elif change.type == "DELETED":
            self.deleted(double, change.obj)
        else:
            self.reconcile(double, change.obj)

    def reconcile(self, double, pvc: dict) -> None:
        st = pvc.get("status") or {}
        if st.get("phase") == "Bound":
            return
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        sc_name = (pvc.get("spec") or {}).get("storageClassName")
        if not st.get("phase"):
            double.mutate("persistentvolumeclaims", ns, name, lambda c: c.setdefault("status", {}).update(phase="Pending"))
        if not sc_name:
            double.record_event(pvc, "Normal", "FailedBinding",
                                "no persistent volumes available for this claim and no storage class is set",
                                self.name)
            return
        sc = double.get("storage.k8s.io/storageclasses", "", sc_name)
        if sc is None:
            double.record_event(pvc, "Warning", "ProvisioningFailed",
                                f'storageclass.storage.k8s.io "{sc_name}" not found', self.name)
            return
        node = (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE)
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not node:
            double.record_event(pvc, "Normal", "WaitForFirstConsumer",
                                "waiting for first consumer to be created before binding", self.name)
            return
        self._bind(double, pvc, sc, node)

    def _bind(self, double, pvc: dict, sc: dict, node: str | None) -> None:
        ns, name, uid = pvc["metadata"]["namespace"], pvc["metadata"]["name"], pvc["metadata"]["uid"]
        spec = pvc.get("spec") or {}
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        pv_name = f"pvc-{uid}"
        if double.get("persistentvolumes", "", pv_name) is None:
            pv = {
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": sc.get("provisioner", "")}},
                "spec": {"capacity": {"storage": size}, "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                         "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                         "storageClassName": sc["metadata"]["name"], "volumeMode": spec.get("volumeMode", "Filesystem"),
                         "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
                                      "name": name, "uid": uid},
                         "hostPath": {"path": f"/var/lib/rancher/k3s/storage/{pv_name}_{ns}_{name}", "type": "DirectoryOrCreate"}},
                "status": {"phase": "Bound"},
            }
            if node:
                pv["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
            double.create("persistentvolumes", pv)

        def bound(c):
            c["spec"]["volumeName"] = pv_name
            ann = c["metadata"].setdefault("annotations", {})
            ann["pv.kubernetes.io/bind-completed"] = "yes"
            ann["pv.kubernetes.io/bound-by-controller"] = "yes"
            ann["volume.kubernetes.io/storage-provisioner"] = sc.get("provisioner", "")
            c["status"] = {"phase": "Bound", "accessModes": c["spec"].get("accessModes") or ["ReadWriteOnce"],
                           "capacity": {"storage": size}}
        double.mutate("persistentvolumeclaims", ns, name, bound)
        double.record_event(pvc, "Normal", "ProvisioningSucceeded",
                            f'Successfully provisioned volume {pv_name} ({now_rfc3339()})', sc.get("provisioner", self.name))

    def deleted(self, double, pvc: dict) -> None:
        """The claim is gone: its PV is Released, then deleted only if its reclaim policy is Delete
        (kubernetes pkg/controller/volume/persistentvolume/pv_controller.go, reclaimVolume: a
        Retain volume stays Released, its claimRef kept, until an admin deletes it)."""
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        pv = double.get("persistentvolumes", "", pv_name) if pv_name else None
        if pv is None:
            return
        if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Delete") == "Delete":
            double.delete("persistentvolumes", "", pv_name)
        else:
            double.mutate("persistentvolumes", "", pv_name, lambda v: v.setdefault("status", {}).update(phase="Released"))
