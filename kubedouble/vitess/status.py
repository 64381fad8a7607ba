"""Status of the vitess-operator's objects, computed from what the double's kubelet reports.

Pure functions: they take stored objects (pods, Deployments, children) and return the status
dicts the operator writes, at the real field names of the v2.17.0 CRDs (condition-like
fields are the strings "True"/"False"/"Unknown", as in the CRDs). No store access here.
"""

from __future__ import annotations

from ..controllers.common import is_ready
from . import names


def tf(b: bool) -> str:
    return "True" if b else "False"


def deployment_available(dep: dict | None) -> bool:
    if not dep:
        return False
    want = (dep.get("spec") or {}).get("replicas", 1)
    st = dep.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    return conds.get("Available") == "True" and st.get("availableReplicas", 0) >= want


def lockserver_status(ls: dict, pods: list[dict], client_service: str) -> dict:
    ready = sum(1 for p in pods if is_ready(p))
    # available once a quorum of the three members serves, as clients can then use it
    return {"available": tf(ready >= 2), "clientServiceName": client_service,
            "observedGeneration": ls["metadata"].get("generation", 1)}


def shard_status(shard: dict, tablet_pods: list[dict], master: str | None, want_hash: dict[str, str],
                 backups: list, has_locations: bool, vtorc: dict | None) -> dict:
    tablets = {}
    cells = set()
    for p in tablet_pods:
        lb = p["metadata"].get("labels") or {}
        a = names.alias(lb.get(names.CELL, ""), int(lb.get(names.TABLET_UID, "0")))
        cells.add(lb.get(names.CELL, ""))
        running = (p.get("status") or {}).get("phase") == "Running"
        pool = lb.get(names.TABLET_TYPE, "replica")
        entry = {"poolType": pool, "index": int(lb.get(names.TABLET_INDEX, "0")),
                 "type": "primary" if a == master else pool,
                 "ready": tf(is_ready(p)), "running": tf(running), "available": tf(is_ready(p)),
                 "dataVolumeBound": tf(running)}
        cur = (p["metadata"].get("annotations") or {}).get("planetscale.com/desired-state-hash")
        if want_hash.get(p["metadata"]["name"]) not in (None, cur):
            entry["pendingChanges"] = "images or resources changed; the pod will be replaced"
        tablets[a] = entry
    master_ready = bool(master) and tablets.get(master, {}).get("ready") == "True"
    st = {"observedGeneration": shard["metadata"].get("generation", 1), "tablets": tablets,
          "cells": sorted(cells), "hasMaster": tf(bool(master)), "servingWrites": tf(master_ready),
          "idle": "False", "orphanedTablets": {}}
    if master:
        st["masterAlias"] = master
    if has_locations:
        complete = list(backups)
        st["hasInitialBackup"] = tf(bool(complete))
        st["backupLocations"] = [{"name": "", "completeBackups": len(complete), "incompleteBackups": 0,
                                  **({"latestCompleteBackupTime": complete[-1].time} if complete else {})}]
    else:
        # without backup storage the operator cannot tell: the real one leaves it Unknown
        st["hasInitialBackup"] = "Unknown"
    if vtorc is not None:
        st["vitessOrchestrator"] = {"available": tf(deployment_available(vtorc)),
                                    "serviceName": vtorc["metadata"]["name"]}
    return st


def shard_ready(st: dict, desired: int) -> bool:
    tablets = st.get("tablets") or {}
    ready = sum(1 for t in tablets.values() if t.get("ready") == "True")
    return ready >= desired and st.get("servingWrites") == "True"


def keyspace_status(ks: dict, shards: dict[str, tuple[dict, int, int]], now: str) -> dict:
    """``shards``: shard name -> (shard status, desired tablets, updated tablets)."""
    out_shards = {}
    desired_t = ready_t = tablets_t = updated_t = ready_shards = 0
    for name, (st, desired, updated) in sorted(shards.items()):
        tablets = st.get("tablets") or {}
        ready = sum(1 for t in tablets.values() if t.get("ready") == "True")
        out_shards[name] = {"hasMaster": st.get("hasMaster", "Unknown"), "servingWrites": st.get("servingWrites", "Unknown"),
                            "desiredTablets": desired, "readyTablets": ready, "tablets": len(tablets),
                            "updatedTablets": updated, "cells": st.get("cells") or []}
        desired_t += desired
        ready_t += ready
        tablets_t += len(tablets)
        updated_t += updated
        ready_shards += shard_ready(st, desired)
    all_ready = bool(shards) and ready_shards == len(shards)
    prev = {c.get("type"): c for c in (ks.get("status") or {}).get("conditions") or []}

    def cond(type_: str, status: str, reason: str, message: str) -> dict:
        p = prev.get(type_)
        since = p["lastTransitionTime"] if p and p.get("status") == status else now
        return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    return {
        "observedGeneration": ks["metadata"].get("generation", 1), "idle": "False", "shards": out_shards,
        "partitionings": [{"shardNames": sorted(shards), "desiredShards": len(shards), "readyShards": ready_shards,
                           "desiredTablets": desired_t, "readyTablets": ready_t, "tablets": tablets_t,
                           "updatedTablets": updated_t,
                           "servingWrites": tf(all(s[0].get("servingWrites") == "True" for s in shards.values()))}],
        "conditions": [
            cond("Ready", tf(all_ready), "KeyspaceReady" if all_ready else "KeyspaceNotReady",
                 "all shards are ready" if all_ready else f"{ready_shards}/{len(shards)} shards ready"),
            cond("ReshardingActive", "False", "NoActiveResharding", "no resharding workflow is running"),
            cond("ReshardingInSync", "Unknown", "NoActiveResharding", "no resharding workflow is running")],
        "orphanedShards": {},
    }


def cluster_keyspace_entry(ks_status: dict, cells: list[str]) -> dict:
    part = (ks_status.get("partitionings") or [{}])[0]
    return {"desiredShards": part.get("desiredShards", 0), "shards": part.get("desiredShards", 0),
            "readyShards": part.get("readyShards", 0), "updatedShards": part.get("readyShards", 0),
            "desiredTablets": part.get("desiredTablets", 0), "tablets": part.get("tablets", 0),
            "readyTablets": part.get("readyTablets", 0), "updatedTablets": part.get("updatedTablets", 0),
            "cells": cells}
