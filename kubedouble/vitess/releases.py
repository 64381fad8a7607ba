"""Which vitess-operator release a container runs, and what that release does differently.

The simulated operator behaves as the release named by its container image's tag
(``planetscale/vitess-operator:v2.10.4``, behind any registry prefix such as
``harbor.lan/vitess/planetscale/vitess-operator:v2.10.4``, optionally pinned
``...:v2.10.4@sha256:...``). A tag that is a release version the double does not simulate
(``v2.18.0``, ``v2.7.2``) raises ``UnknownRelease``: the simulated process refuses to start
(processes.py) rather than behave like a release that is not running. An image that names no
version at all (by digest alone, as vtflow's redeploy writes it, or ``latest``) cannot be read:
a real registry knows which tag a digest was pushed as, so the double asks its own table
first (``VitessState.register_image``, state.py) and, failing that, runs the newest simulated
release and says so in the operator's log (``running_release``). That is kinder than refusing
a working deployment, so it is stated in every such log; register the digest to be exact.

Facts per release, read from planetscale/vitess-operator at each tag (v2.8.0 .. v2.17.0,
``git show <tag>:<path>``):
  - pkg/apis/planetscale/v2/defaults.go: ``DefaultEtcdImage`` (overridable with the operator
    flag ``--default_etcd_image``, pkg/operator/environment/environment.go), the default
    Vitess image ``defaultVitessLiteImage``, the default mysqld image and mysqld-exporter image;
  - go.mod: the Vitess it is built against (``vitess.io/vitess v0.<major>.<patch>``);
  - pkg/operator/vttablet/flags.go: ``--queryserver-config-query-timeout`` is ``30`` (seconds)
    up to v2.11 and ``30s`` from v2.12 (commit 50880562 "Fix flag usage");
  - pkg/operator/vttablet/pod.go: ``--builtinbackup-incremental-restore-path=/vt/vtdataroot``
    on every vttablet from v2.17 (before, the same code was commented out: "This flag only
    exists in ... vitess 20.0"; enabled unconditionally by be3a4f51 "Cleanup old version check");
  - pkg/operator/mysql/mysql.go (from v2.12): ``--mysql_server_version=<tag>-Vitess`` for
    vttablet, mysqlctld, vtgate and vtctld when the mysqld image's tag starts with a digit
    (``mysql:8.0.30`` -> ``8.0.30-Vitess``; ``vitess/lite:v20.0.1`` gives none).
The operator never checks which Vitess version an image holds: it passes its flags to
whatever it is given, so the version question is answered by the Vitess binaries
(vitessflags.py). A patch release this table lacks (v2.17.1) behaves as its minor and uses
the newest listed patch's default images. Pure: no store, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPERATOR_IMAGE = re.compile(r"(?:^|/)vitess-operator(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
                            r"(?:@(?P<digest>[a-z0-9]+:[0-9a-f]+))?$")
_TAG = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-(rc\d+))?$")


class UnknownRelease(ValueError):
    """The image names no vitess-operator release this double simulates."""


class NoVersion(UnknownRelease):
    """The image names no version at all (by digest alone, or a tag such as ``latest``)."""


@dataclass(frozen=True)
class Release:
    version: str                     # "2.10.4", "2.17.0-rc1"
    minor: tuple[int, int]
    vitess_major: int                # the Vitess it is built against (go.mod)
    etcd_image: str                  # DefaultEtcdImage
    vitess_image: str                # defaultVitessLiteImage
    mysqld_image: str                # the default mysqld image (the lite image before v2.13)
    exporter_image: str
    query_timeout: str               # the value of vttablet's --queryserver-config-query-timeout
    incremental_restore_path: bool   # vttablet gets --builtinbackup-incremental-restore-path
    mysql_server_version: bool       # --mysql_server_version from the mysqld image's tag

    @property
    def tag(self) -> str:
        return "v" + self.version


# per minor: (Vitess major, etcd image, default mysqld image or None = the lite image, exporter,
# query timeout, incremental restore path, mysql_server_version)
_MINORS: dict[tuple[int, int], tuple] = {
    (2, 8): (15, "quay.io/coreos/etcd:v3.3.13", None, "prom/mysqld-exporter:v0.11.0", "30", False, False),
    (2, 9): (16, "quay.io/coreos/etcd:v3.3.13", None, "prom/mysqld-exporter:v0.11.0", "30", False, False),
    (2, 10): (17, "quay.io/coreos/etcd:v3.3.13", None, "prom/mysqld-exporter:v0.11.0", "30", False, False),
    (2, 11): (18, "quay.io/coreos/etcd:v3.5.9", None, "prom/mysqld-exporter:v0.11.0", "30", False, False),
    (2, 12): (19, "quay.io/coreos/etcd:v3.5.9", None, "prom/mysqld-exporter:v0.11.0", "30s", False, True),
    (2, 13): (20, "quay.io/coreos/etcd:v3.5.9", "mysql:8.0.30", "prom/mysqld-exporter:v0.11.0", "30s", False, True),
    (2, 14): (21, "quay.io/coreos/etcd:v3.5.9", "mysql:8.0.30", "prom/mysqld-exporter:v0.11.0", "30s", False, True),
    (2, 15): (22, "quay.io/coreos/etcd:v3.5.17", "mysql:8.0.40", "prom/mysqld-exporter:v0.14.0", "30s", False, True),
    (2, 16): (23, "quay.io/coreos/etcd:v3.5.17", "mysql:8.0.40", "prom/mysqld-exporter:v0.14.0", "30s", False, True),
    (2, 17): (24, "quay.io/coreos/etcd:v3.5.17", "mysql:8.0.40", "prom/mysqld-exporter:v0.18.0", "30s", True, True),
}

# defaultVitessLiteImage of every tag (the tag of vitess/lite)
_LITE: dict[str, str] = {
    "2.8.0-rc1": "v15.0.0-rc1", "2.8.0": "v15.0.0", "2.8.1": "v15.0.1", "2.8.2": "v15.0.2", "2.8.3": "v15.0.3",
    "2.8.4": "v15.0.3", "2.8.5": "v15.0.4", "2.8.6": "v15.0.5",
    "2.9.0-rc1": "v16.0.0-rc1", "2.9.0": "v16.0.0", "2.9.1": "v16.0.1", "2.9.2": "v16.0.2", "2.9.3": "v16.0.3",
    "2.9.4": "v16.0.4", "2.9.5": "v16.0.5",
    "2.10.0-rc1": "v17.0.0-rc1", "2.10.0": "v17.0.0", "2.10.1": "v17.0.1", "2.10.2": "v17.0.2",
    "2.10.3": "v17.0.3", "2.10.4": "v17.0.7",
    "2.11.0-rc1": "v18.0.0-rc1", "2.11.0": "v18.0.0", "2.11.1": "v18.0.7",
    "2.12.0-rc1": "v19.0.0-rc1", "2.12.0": "v19.0.0",
    "2.13.0-rc1": "v20.0.0-rc1", "2.13.0-rc2": "v20.0.0-rc2", "2.13.0": "v20.0.0", "2.13.1": "v20.0.1",
    "2.14.0-rc1": "v21.0.0-rc1", "2.14.0": "v21.0.0",
    "2.15.0-rc1": "v22.0.0-rc1", "2.15.0-rc2": "v22.0.0-rc2", "2.15.0-rc3": "v22.0.0-rc3", "2.15.0": "v22.0.0",
    "2.15.1": "v22.0.1",
    "2.16.0-rc1": "v23.0.0-rc1", "2.16.0-rc2": "v23.0.0-rc2", "2.16.0": "v23.0.0",
    "2.17.0-rc1": "v24.0.0-rc1", "2.17.0": "v24.0.0-mysql80",
}

DATA_ROOT = "/vt/vtdataroot"   # vtDataRootPath: the incremental restore path


def is_operator_image(image: str) -> bool:
    """Is this a vitess-operator image (any tag, digest or registry prefix)?"""
    return bool(OPERATOR_IMAGE.search(image.strip()))


NEWEST = "2.17.0"    # what an image naming no version is taken to run (what `latest` is today)


def running_release(image: str) -> tuple[Release, str | None]:
    """The release a simulated operator process runs for ``image``, and a note when the image
    names no version and the newest simulated release is assumed. Raises UnknownRelease for a
    version tag the double does not simulate, or an image that is no vitess-operator."""
    try:
        return operator_release(image), None
    except NoVersion as e:
        return operator_release(f"planetscale/vitess-operator:v{NEWEST}"), (
            f"{e}; simulating v{NEWEST}, the newest release the double knows")


def operator_release(image: str) -> Release:
    """The release an operator image's tag names. Raises UnknownRelease (with the fix) when it
    names none the double simulates, NoVersion (a subclass) when it names no version at all."""
    m = OPERATOR_IMAGE.search(image.strip())
    if m is None:
        raise UnknownRelease(f"image {image!r} is not planetscale/vitess-operator")
    tag = m.group("tag")
    if not tag:
        raise NoVersion(f"image {image!r} has no tag, so the double cannot tell which vitess-operator release "
                        "it is (register the digest with VitessState.register_image, or use name:vX.Y.Z@sha256:...)")
    t = _TAG.match(tag)
    if t is None:
        raise NoVersion(f"image {image!r}: tag {tag!r} names no vitess-operator version")
    minor = (int(t.group(1)), int(t.group(2)))
    if minor not in _MINORS:
        known = f"v{min(_MINORS)[0]}.{min(_MINORS)[1]} .. v{max(_MINORS)[0]}.{max(_MINORS)[1]}"
        raise UnknownRelease(f"image {image!r}: tag {tag!r} is no vitess-operator release the double simulates "
                             f"({known}); use one of those tags")
    version = f"{t.group(1)}.{t.group(2)}.{t.group(3)}" + (f"-{t.group(4)}" if t.group(4) else "")
    lite = _LITE.get(version) or _LITE[max((v for v in _LITE if v.startswith(f"{minor[0]}.{minor[1]}.") and "-" not in v),
                                           key=lambda v: int(v.split(".")[2]))]
    major, etcd, mysqld, exporter, timeout, incr, msv = _MINORS[minor]
    return Release(version, minor, major, etcd, f"vitess/lite:{lite}", mysqld or f"vitess/lite:{lite}",
                   exporter, timeout, incr, msv)


def mysql_server_version(mysqld_image: str) -> str | None:
    """What pkg/operator/mysql UpdateMySQLServerVersion sets: the text after the image's first ':'
    plus ``-Vitess`` when it starts with a digit (sqlparser.ConvertMySQLVersionToCommentVersion
    accepts it), else nothing. (A registry port, ``harbor.lan:5000/mysql:8.0.30``, is taken as
    the tag ``5000/mysql:8.0.30`` and accepted: that is what the real code does.)"""
    _, sep, label = mysqld_image.partition(":")
    if not sep or not label[:1].isdigit():
        return None
    return f"{label}-Vitess"
