"""Names and labels of the objects the simulated vitess-operator creates, built in one place.

The operator joins name parts with "-" and appends the first 8 hex digits of the MD5 of the
parts, each followed by a NUL byte. Checked against names seen from the real operator:
``example-etcd-faf13de3``, ``example-zone1-vtctld-1d4dcad0``, ``example-vtctld-625ee430``,
``example-vtgate-ae7df4b6``, ``example-zone1-vtgate-bc6cde92``, ``example-commerce-x-x-0f5afee6``
and the tablet pod ``example-vttablet-zone1-2469782763-bfadd780``. How the real operator
derives a tablet UID is NOT known here: ``tablet_uid`` is a stable 32-bit hash of the tablet's
identity, which has the same shape. Pure functions only: no store, no I/O.
"""

from __future__ import annotations

import hashlib

COMPONENT = "planetscale.com/component"
CLUSTER = "planetscale.com/cluster"
CELL = "planetscale.com/cell"
KEYSPACE = "planetscale.com/keyspace"
SHARD = "planetscale.com/shard"
TABLET_UID = "planetscale.com/tablet-uid"
TABLET_TYPE = "planetscale.com/tablet-type"
TABLET_INDEX = "planetscale.com/tablet-index"
LOCKSERVER = "etcd.planetscale.com/lockserver"
ETCD_INDEX = "etcd.planetscale.com/index"


def name_hash(*parts: str) -> str:
    return hashlib.md5(b"".join(p.encode() + b"\x00" for p in parts)).hexdigest()[:8]


def join(*parts: str) -> str:
    return "-".join(parts) + "-" + name_hash(*parts)


def safe_shard(shard: str) -> str:
    """'-' -> 'x-x', '-80' -> 'x-80', '80-' -> '80-x': usable in names and label values."""
    start, _, end = shard.partition("-")
    if "-" not in shard:
        return shard
    return f"{start or 'x'}-{end or 'x'}"


def shard_from_safe(safe: str) -> str:
    if "-" not in safe:
        return safe
    start, _, end = safe.partition("-")
    return f"{'' if start == 'x' else start}-{'' if end == 'x' else end}"


def equal_shards(parts: int) -> list[str]:
    """The shard names of an ``equal`` partitioning: 1 -> ['-'], 2 -> ['-80', '80-'], ..."""
    if parts <= 1:
        return ["-"]
    bounds = [""] + [f"{(i * 256 // parts):02x}" for i in range(1, parts)] + [""]
    return [f"{bounds[i]}-{bounds[i + 1]}" for i in range(parts)]


def tablet_uid(cell: str, keyspace: str, shard: str, pool_type: str, index: int) -> int:
    digest = hashlib.md5("\x00".join((cell, keyspace, shard, pool_type, str(index))).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def alias(cell: str, uid: int) -> str:
    """The tablet alias as Vitess prints it: cell, dash, zero-padded 10-digit uid."""
    return f"{cell}-{uid:010d}"


def lockserver(cluster: str) -> str:
    return join(cluster, "etcd")


def cell(cluster: str, cell_name: str) -> str:
    return join(cluster, cell_name)


def keyspace(cluster: str, ks: str) -> str:
    return join(cluster, ks)


def shard(cluster: str, ks: str, shard_name: str) -> str:
    return join(cluster, ks, safe_shard(shard_name))


def vtctld(cluster: str, cell_name: str) -> str:
    return join(cluster, cell_name, "vtctld")


def vtctld_service(cluster: str) -> str:
    return join(cluster, "vtctld")


def vtgate(cluster: str, cell_name: str) -> str:
    """Deployment and per-cell Service of a cell's gateways."""
    return join(cluster, cell_name, "vtgate")


def vtgate_service(cluster: str) -> str:
    """The cluster-wide gateway Service (status.gatewayServiceName)."""
    return join(cluster, "vtgate")


def vtadmin(cluster: str, cell_name: str) -> str:
    return join(cluster, cell_name, "vtadmin")


def vtorc(cluster: str, ks: str, shard_name: str, cell_name: str) -> str:
    return join(cluster, ks, safe_shard(shard_name), cell_name, "vtorc")


def tablet_pod(cluster: str, tablet_alias: str) -> str:
    return join(cluster, "vttablet", tablet_alias)


def tablet_service(cluster: str) -> str:
    """The headless Service that gives every tablet pod a DNS name."""
    return join(cluster, "vttablet")


def backup(cluster: str, ks: str, shard_name: str, backup_name: str) -> str:
    """A VitessBackup's name for ``2026-11-25.031500.zone1-0000000101``.

    The real naming is not known here; this keeps the operator's style (parts + hash) and
    stays a valid DNS name.
    """
    date, time_, tablet = backup_name.split(".", 2)
    return join(cluster, ks, safe_shard(shard_name), f"{date.replace('-', '')}-{time_}", tablet)
