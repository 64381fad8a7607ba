"""The version table: which vitess-operator release runs on which Kubernetes, with which Vitess.

One row per release vtflow has checked (its manifests, CRDs and examples are among the six
releases the tests read from upstream). Each row is the release's own README compatibility
line (operator minor -> recommended Vitess major -> recommended Kubernetes minors; v2.16's from
v2.17's README, which corrected it) and its images, taken from the release's
``test/endtoend/operator/cluster_upgrade.yaml``: a release's end-to-end test starts one Vitess
major behind (``101_initial_cluster.yaml``) and upgrades to the major it was built against, so
that file names the recommended images (v2.17.0: its go.mod requires vitess.io/vitess v0.24.0).

``choose`` picks for a cluster's Kubernetes version the newest release that supports it, with
that release's Vitess; a pinned operator or Vitess version outside the table is refused with the
table's row and the fix, or allowed with ``force`` (and a warning for the report). Pure: the
caller reads the server's version and the manifest.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from vtflow.errors import ConfigError

# A release's operator.yaml as its own end-to-end test builds it (kustomize of deploy/, every
# CRD of the release): its image is the placeholder the test loads locally, which
# ``pin_operator_image`` replaces with the release's image on Docker Hub.
MANIFEST_URL = ("https://raw.githubusercontent.com/planetscale/vitess-operator/{version}"
                "/test/endtoend/operator/operator-latest.yaml")
OPERATOR_IMAGE = "planetscale/vitess-operator:{version}"
PLACEHOLDER_IMAGE = "vitess-operator-pr:latest"


@dataclass(frozen=True)
class Images:
    vitess: str            # vtctld, vtgate, vttablet, vtorc, vtbackup
    mysqld: str            # the mysqld container (mysql80Compatible)
    vtadmin: str
    mysqld_exporter: str


    def fields(self) -> dict[str, str]:
        """As ClusterSpec's image fields."""
        return {"vitess_image": self.vitess, "mysqld_image": self.mysqld, "vtadmin_image": self.vtadmin,
                "mysqld_exporter_image": self.mysqld_exporter}


@dataclass(frozen=True)
class Release:
    operator: str                      # the release tag, e.g. v2.17.0
    kubernetes: tuple[str, str]        # lowest and highest supported minor
    vitess: str                        # the recommended Vitess release
    lite: str                          # image pattern of the Vitess components ({v}: the Vitess version)
    mysqld: str                        # image pattern of mysqld: vitess/lite until v19; mysql:8.0.30 in v2.13/v2.14's tests
    exporter: str

    @property
    def minor(self) -> str:
        return "v%d.%d" % minor_of(self.operator)

    @property
    def vitess_major(self) -> int:
        return minor_of(self.vitess)[0]

    def supports(self, kubernetes: str) -> bool:
        return minor_of(self.kubernetes[0]) <= minor_of(kubernetes) <= minor_of(self.kubernetes[1])

    def images(self, vitess: str | None = None) -> Images:
        v = vitess or self.vitess
        return Images(self.lite.format(v=v), self.mysqld.format(v=v), f"vitess/vtadmin:{v}", self.exporter)

    def row(self) -> str:
        return (f"vitess-operator {self.operator}: Kubernetes {self.kubernetes[0]}-{self.kubernetes[1]}, "
                f"Vitess {self.vitess_major} ({self.images().vitess})")


# Newest last. v2.11 (Vitess 18, Kubernetes 1.22-1.25) and v2.12 (Vitess 19, 1.25-1.28) exist
# upstream but are not rows: vtflow has not checked their manifests and CRDs.
RELEASES: tuple[Release, ...] = (
    Release("v2.10.4", ("1.22", "1.25"), "v17.0.7", "vitess/lite:{v}", "vitess/lite:{v}", "prom/mysqld-exporter:v0.11.0"),
    Release("v2.13.1", ("1.25", "1.28"), "v20.0.1", "vitess/lite:{v}", "mysql:8.0.30", "prom/mysqld-exporter:v0.11.0"),
    Release("v2.14.0", ("1.29", "1.31"), "v21.0.0", "vitess/lite:{v}", "mysql:8.0.30", "prom/mysqld-exporter:v0.11.0"),
    Release("v2.15.1", ("1.30", "1.32"), "v22.0.1", "vitess/lite:{v}", "vitess/lite:{v}", "prom/mysqld-exporter:v0.14.0"),
    Release("v2.16.0", ("1.31", "1.34"), "v23.0.0", "vitess/lite:{v}-mysql80", "vitess/lite:{v}-mysql80",
            "prom/mysqld-exporter:v0.14.0"),
    Release("v2.17.0", ("1.32", "1.35"), "v24.0.0", "vitess/lite:{v}-mysql80", "vitess/lite:{v}-mysql80",
            "prom/mysqld-exporter:v0.18.0"),
)
DEFAULT = RELEASES[-1]
# Each Vitess major is supported for one year, and each operator minor ends with it (the
# operator's README, "Release Cycle"); Vitess 23 ended on 2026-11-04, so 24 is the only one left.
OLDEST_SUPPORTED_VITESS = 24


def minor_of(version: str) -> tuple[int, int]:
    """(1, 24) from 'v1.24.6+k3s1', '1.24' or 'v1.24'; (2, 17) from 'v2.17.0-rc1'."""
    m = re.match(r"v?(\d+)\.(\d+)", version.strip())
    if not m:
        raise ConfigError(f"version {version!r}", "is not a version.", "give it as vMAJOR.MINOR[.PATCH], e.g. v2.17.0.")
    return int(m.group(1)), int(m.group(2))


def table() -> str:
    """The table as lines, newest first, for errors and the report."""
    return "\n".join(f"  {r.row()}" for r in reversed(RELEASES))


def release(operator: str) -> Release:
    """The row of ``operator`` (any patch or pre-release of a row's minor), or a ConfigError."""
    wanted = minor_of(operator)
    for r in RELEASES:
        if minor_of(r.operator) == wanted:
            return r
    raise ConfigError(f"vitess-operator {operator}", "is not in vtflow's version table:\n" + table(),
                      "pin one of the releases above (operator_version), or leave it empty to pick by Kubernetes version.")


def _major(vitess: str) -> int:
    return int(re.match(r"v?(\d+)", vitess).group(1))


def vitess_pin(text: str, chosen: Release) -> tuple[str, int]:
    """The Vitess release a pin names, and its major: ``v24.0.4`` as given; a bare major
    (``v24``, ``24``) is the release's recommended one of that major, else its ``.0.0``."""
    m = re.fullmatch(r"v?(\d+)(\.\d+\.\d+)?", text.strip())
    if not m:
        raise ConfigError(f"vitess_version {text!r}", "is not a Vitess version.", "give it as vMAJOR.0.PATCH, e.g. v24.0.0.")
    major = int(m.group(1))
    if m.group(2):
        return f"v{major}{m.group(2)}", major
    return (chosen.vitess if major == chosen.vitess_major else f"v{major}.0.0"), major


@dataclass(frozen=True)
class Choice:
    release: Release
    images: Images
    kubernetes: str                    # the server's gitVersion
    reason: str                        # one line: what was chosen and why
    warnings: tuple[str, ...] = ()

    @property
    def markdown(self) -> str:
        # the warnings are the vitess-operator step's, listed there
        return "\n".join(["## Versions", "", f"- {self.reason}",
                          f"- images: {self.images.vitess} (Vitess components), {self.images.mysqld} (mysqld), "
                          f"{self.images.vtadmin}, {self.images.mysqld_exporter}"])


def choose(kubernetes: str, operator: str | None = None, vitess: str | None = None, force: bool = False,
           pinned_by: str = "as pinned") -> Choice:
    """The release and images for a cluster at ``kubernetes`` (its gitVersion).

    ``operator`` pins a release (a row's minor), ``vitess`` a Vitess version (``v24`` or
    ``v24.0.4``); a pin the table does not pair with this Kubernetes, or a Vitess major other
    than the release's, is a ConfigError naming the row and the fix, or with ``force`` a
    warning. Nothing fits and nothing is pinned: refused, or with ``force`` the newest release."""
    k8s = "%d.%d" % minor_of(kubernetes)
    warnings: list[str] = []
    if operator:
        chosen = release(operator)
        why = f"vitess-operator {operator} {pinned_by}" + ("" if operator == chosen.operator else
                                                           f" (the table's {chosen.minor} row: {chosen.operator})")
        if not chosen.supports(kubernetes):
            fits = [r.operator for r in RELEASES if r.supports(kubernetes)]
            problem = (f"supports Kubernetes {chosen.kubernetes[0]}-{chosen.kubernetes[1]}; the cluster runs "
                       f"{kubernetes}.")
            fix = (f"pin {' or '.join(fits)} (or leave operator_version empty), or upgrade Kubernetes"
                   if fits else "upgrade Kubernetes to a version of the table")
            if not force:
                raise ConfigError(f"vitess-operator {chosen.operator}", f"{problem}\n{table()}",
                                  f"{fix}; or re-run with --force (parameter force) to go on anyway.")
            warnings.append(f"vitess-operator {chosen.operator} {problem} Going on: force.")
    else:
        fits = [r for r in RELEASES if r.supports(kubernetes)]
        if fits:
            chosen = fits[-1]
            why = (f"vitess-operator {chosen.operator}: the newest release in vtflow's table that supports "
                   f"Kubernetes {k8s} ({chosen.kubernetes[0]}-{chosen.kubernetes[1]})")
        elif not force:
            raise ConfigError(f"Kubernetes {kubernetes}", "is supported by no release in vtflow's version table:\n"
                              + table(), "run the cluster at a Kubernetes version of the table, or pin "
                              "operator_version and re-run with --force (parameter force) to go on anyway.")
        else:
            chosen = DEFAULT
            why = f"vitess-operator {chosen.operator}: the newest release (force: none supports Kubernetes {k8s})"
            warnings.append(f"no release in vtflow's table supports Kubernetes {k8s}; running {chosen.row()}.")
    version = chosen.vitess
    if vitess:
        version, major = vitess_pin(vitess, chosen)
        if major != chosen.vitess_major:
            problem = (f"vitess-operator {chosen.operator} is built for Vitess {chosen.vitess_major}, "
                       f"not {major}.")
            if not force:
                built = [r.operator for r in RELEASES if r.vitess_major == major]
                other = f", or pin vitess-operator {built[0]}, built for Vitess {major}" if built else ""
                raise ConfigError(f"vitess_version {vitess}", f"{problem}\n{table()}",
                                  f"pin a Vitess {chosen.vitess_major} release (or leave vitess_version empty){other}; "
                                  "or re-run with --force (parameter force) to go on anyway.")
            warnings.append(f"{problem} Going on: force.")
        why += f"; Vitess {version} as pinned"
    else:
        why += f"; Vitess {version}, the release's recommended"
    if _major(version) < OLDEST_SUPPORTED_VITESS:
        warnings.append(f"Vitess {_major(version)} is past its end of life (each major is supported for "
                        f"one year; 23 ended on 2026-11-04): plan the move to Kubernetes "
                        f"{DEFAULT.kubernetes[0]}+ and {DEFAULT.row()}.")
    return Choice(chosen, chosen.images(version), kubernetes, why, tuple(warnings))


def manifest_version(docs: list[dict]) -> str | None:
    """The release a manifest's operator Deployment runs (its image tag), or None for the
    placeholder image of a release's end-to-end manifest, or when it has no such Deployment."""
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in spec.get("containers") or []:
            m = re.search(r"vitess-operator:(v\d+\.\d+\.\d+(?:-[\w.]+)?)$", c.get("image") or "")
            if m:
                return m.group(1)
    return None


def pin_operator_image(docs: list[dict], chosen: Release) -> list[dict]:
    """``docs`` with the end-to-end placeholder image replaced by the release's image (and the
    test's ``imagePullPolicy: Never`` dropped); any other image is left as given."""
    out = []
    for doc in docs:
        if doc.get("kind") == "Deployment":
            doc = copy.deepcopy(doc)
            for c in ((doc.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
                if c.get("image") == PLACEHOLDER_IMAGE:
                    c["image"] = OPERATOR_IMAGE.format(version=chosen.operator)
                    if c.get("imagePullPolicy") == "Never":
                        del c["imagePullPolicy"]
        out.append(doc)
    return out



def with_images(spec, choice: Choice, force: bool = False):
    """``spec`` (a ClusterSpec) with every image it leaves empty taken from ``choice``, and a
    warning per pinned Vitess image of another major than the release's (refused without
    ``force``: the operator passes flags of the major it was built for)."""
    chosen = choice.images.fields()
    warnings = []
    for field, image in chosen.items():
        pinned = getattr(spec, field)
        if not pinned:
            continue
        m = re.search(r"/(?:lite|vtadmin)[^/:@]*:v(\d+)\.", pinned)
        if m and int(m.group(1)) != choice.release.vitess_major:
            problem = (f"is Vitess {m.group(1)}; vitess-operator {choice.release.operator} is built for Vitess "
                       f"{choice.release.vitess_major} ({image}).")
            if not force:
                raise ConfigError(f"cluster {field} {pinned}", problem,
                                  f"leave {field} empty (the release's image), or pin the release built for that "
                                  "Vitess; or re-run with --force (parameter force) to go on anyway.")
            warnings.append(f"{field} {pinned} {problem} Going on: force.")
    spec = spec.model_copy(update={f: getattr(spec, f) or image for f, image in chosen.items()})
    return spec, warnings


def operator_for(docs: list[dict] | None, source: str | None, pinned: str | None) -> tuple[str | None, str]:
    """The release to choose by, and how it was given: the pin, or the release a given
    manifest runs; a manifest whose operator is of another minor than the pin is refused
    (which one would run?)."""
    found = manifest_version(docs) if docs else None
    if pinned and found and minor_of(found) != minor_of(pinned):
        raise ConfigError(f"manifest {source}", f"runs vitess-operator {found}, not the pinned {pinned}.",
                          "give the operator.yaml of the pinned release, or pin the manifest's release "
                          "(or leave operator_version empty).")
    if pinned:
        return pinned, "as pinned"
    return found, "as the given manifest runs it" if found else ""
