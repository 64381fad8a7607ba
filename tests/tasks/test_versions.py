"""tasks/versions.py: the version table against every release's own files, and the choice."""

import re
from pathlib import Path

import pytest
import yaml

from tasks import cluster as c
from tasks import versions
from tasks.operators import load_manifest
from vtflow.errors import ConfigError
from helpers import UPSTREAM

SHIPPED = sorted(p.name.removeprefix("vitess-operator-") for p in UPSTREAM.glob("vitess-operator-v*"))


def files(release: str):
    folder = UPSTREAM / f"vitess-operator-{release}"
    if not folder.is_dir():
        pytest.skip(f"upstream release {folder} is not present (set VTFLOW_UPSTREAM_DIR)")
    return folder


def vitess_cluster(path) -> dict:
    return next(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "VitessCluster")


def rendered(release: versions.Release, **spec) -> dict:
    objects = c.render(c.ClusterSpec(**release.images().fields(), **spec), "example", "example", "10.0.0.11", "u", "pw")
    return next(o for o in objects if o["kind"] == "VitessCluster")


def major(image: str) -> int:
    return int(re.search(r":v(\d+)\.", image).group(1))


def test_every_shipped_release_is_a_row_and_every_row_shipped():
    assert len(SHIPPED) == 6, SHIPPED
    assert [r.operator for r in versions.RELEASES] == sorted(SHIPPED, key=versions.minor_of)


@pytest.mark.parametrize("release", versions.RELEASES, ids=lambda r: r.operator)
def test_the_row_names_the_images_the_release_upgrades_to(release):
    folder = files(release.operator)
    upgrade = vitess_cluster(folder / "examples" / "cluster_upgrade.yaml")["spec"]["images"]
    images = release.images()
    for component in ("vtctld", "vtgate", "vttablet", "vtorc", "vtbackup"):
        assert upgrade[component] == images.vitess, component
    assert upgrade["mysqld"]["mysql80Compatible"] == images.mysqld
    assert upgrade["mysqldExporter"] == images.mysqld_exporter
    vtadmin = vitess_cluster(folder / "examples" / "101_initial_cluster_vtorc_vtadmin.yaml")["spec"]["images"]["vtadmin"]
    assert vtadmin == images.vtadmin
    assert major(images.vitess) == release.vitess_major


@pytest.mark.parametrize("release", versions.RELEASES, ids=lambda r: r.operator)
def test_rendered_cluster_agrees_with_the_release_and_validates_against_its_crds(release):
    folder = files(release.operator)
    first = vitess_cluster(folder / "examples" / "101_initial_cluster.yaml")["spec"]["images"]
    ours = rendered(release)
    # upstream's 101 starts one Vitess major behind, to test the upgrade to the release's own
    # (../shared/FACTS.md): vtflow deploys the release's major from the start
    assert major(first["vtgate"]) == release.vitess_major - 1
    assert {major(ours["spec"]["images"][k]) for k in ("vtctld", "vtgate", "vttablet", "vtorc", "vtbackup", "vtadmin")} \
        == {release.vitess_major}
    for manifest in ("operator-latest.yaml",):
        c.validate_cluster(ours, load_manifest(str(folder / "examples" / manifest)))
    crd = yaml.safe_load((folder / "crds" / "planetscale.com_vitessclusters.yaml").read_text())
    c.validate_cluster(ours, [crd])
    for variant in ({"backup": {"kind": "s3", "s3_bucket": "b", "s3_region": "r"}}, {"vtadmin": False},
                    {"keyspaces": [{"shards": 2, "vtorc": None}]}):
        c.validate_cluster(rendered(release, **variant), [crd])


def test_a_field_the_release_lacks_is_refused_not_dropped():
    crd = yaml.safe_load((files("v2.10.4") / "crds" / "planetscale.com_vitessclusters.yaml").read_text())
    vc = rendered(versions.RELEASES[0])
    vc["spec"]["backup"]["schedules"] = [{"name": "daily", "schedule": "0 0 * * *"}]  # from v2.13 on
    with pytest.raises(ConfigError, match=r"VitessCluster example/example: has fields this operator release's "
                                          r"VitessCluster CRD lacks: spec\.backup\.schedules"):
        c.validate_cluster(vc, [crd])
    newer = yaml.safe_load((files("v2.17.0") / "crds" / "planetscale.com_vitessclusters.yaml").read_text())
    with pytest.raises(ConfigError, match=r"does not match the VitessCluster CRD schema: spec\.backup\.schedules\[0\]: "
                                          "'resources' is a required property"):
        c.validate_cluster(vc, [newer])  # a field v2.17 has: checked, not dropped


@pytest.mark.parametrize("kubernetes,operator,vitess", [
    ("v1.24.6+k3s1", "v2.10.4", "vitess/lite:v17.0.7"),     # the user's cluster
    ("v1.25.16+k3s4", "v2.13.1", "vitess/lite:v20.0.1"),    # v2.10 and v2.13 both: the newer
    ("v1.29.15+k3s1", "v2.14.0", "vitess/lite:v21.0.0"),
    ("v1.31.14+k3s1", "v2.16.0", "vitess/lite:v23.0.0-mysql80"),
    ("v1.35.0+k3s1", "v2.17.0", "vitess/lite:v24.0.0-mysql80"),
])
def test_the_newest_release_for_the_clusters_kubernetes(kubernetes, operator, vitess):
    choice = versions.choose(kubernetes)
    assert (choice.release.operator, choice.images.vitess) == (operator, vitess)
    assert choice.reason.startswith(f"vitess-operator {operator}: the newest release in vtflow's table that supports "
                                    f"Kubernetes {'%d.%d' % versions.minor_of(kubernetes)}")
    eol = choice.release.vitess_major < 24
    assert bool(choice.warnings) == eol and all("past its end of life" in w for w in choice.warnings)


def test_a_kubernetes_no_release_supports_is_refused_with_the_table_or_forced():
    with pytest.raises(ConfigError) as e:
        versions.choose("v1.36.1+k3s1")
    text = str(e.value)
    assert text.startswith("Kubernetes v1.36.1+k3s1: is supported by no release in vtflow's version table:")
    assert "vitess-operator v2.17.0: Kubernetes 1.32-1.35, Vitess 24 (vitess/lite:v24.0.0-mysql80)" in text
    assert "--force" in text
    forced = versions.choose("v1.36.1+k3s1", force=True)
    assert forced.release == versions.DEFAULT and "supports Kubernetes 1.36" in forced.warnings[0]


def test_a_pinned_operator_outside_the_table_row_is_refused_with_its_row_and_goes_on_with_force():
    with pytest.raises(ConfigError) as e:
        versions.choose("v1.24.6+k3s1", operator="v2.17.0")
    text = str(e.value)
    assert text.startswith("vitess-operator v2.17.0: supports Kubernetes 1.32-1.35; the cluster runs v1.24.6+k3s1.")
    assert "Fix: pin v2.10.4 (or leave operator_version empty)" in text and "--force" in text
    forced = versions.choose("v1.24.6+k3s1", operator="v2.17.0", force=True)
    assert forced.release.operator == "v2.17.0" and forced.images.vitess == "vitess/lite:v24.0.0-mysql80"
    assert forced.warnings == ("vitess-operator v2.17.0 supports Kubernetes 1.32-1.35; the cluster runs v1.24.6+k3s1. "
                               "Going on: force.",)
    with pytest.raises(ConfigError, match=r"vitess-operator v2.12.0: is not in vtflow's version table"):
        versions.choose("v1.26.0", operator="v2.12.0", force=True)


def test_a_pinned_vitess_version():
    assert versions.choose("v1.33.5", vitess="v24.0.4").images == versions.Images(
        "vitess/lite:v24.0.4-mysql80", "vitess/lite:v24.0.4-mysql80", "vitess/vtadmin:v24.0.4",
        "prom/mysqld-exporter:v0.18.0")
    assert versions.choose("v1.33.5", vitess="24").images.vitess == "vitess/lite:v24.0.0-mysql80"
    with pytest.raises(ConfigError) as e:
        versions.choose("v1.33.5", vitess="v23.0.3")
    assert str(e.value).startswith("vitess_version v23.0.3: vitess-operator v2.17.0 is built for Vitess 24, not 23.")
    assert "or pin vitess-operator v2.16.0, built for Vitess 23" in str(e.value)
    forced = versions.choose("v1.33.5", vitess="v23.0.3", force=True)
    assert forced.images.vitess == "vitess/lite:v23.0.3-mysql80" and len(forced.warnings) == 2
    with pytest.raises(ConfigError, match="is not a Vitess version"):
        versions.choose("v1.33.5", vitess="latest")


def test_pinned_cluster_images_are_checked_against_the_release():
    choice = versions.choose("v1.24.6+k3s1")
    spec, warnings = versions.with_images(c.ClusterSpec(vitess_image="harbor.lan/vitess/lite:v17.0.6"), choice)
    assert spec.vitess_image == "harbor.lan/vitess/lite:v17.0.6" and spec.mysqld_image == "vitess/lite:v17.0.7"
    assert warnings == []
    with pytest.raises(ConfigError, match=r"cluster vitess_image vitess/lite:v24.0.0-mysql80: is Vitess 24; "
                                          r"vitess-operator v2.10.4 is built for Vitess 17"):
        versions.with_images(c.ClusterSpec(vitess_image="vitess/lite:v24.0.0-mysql80"), choice)
    _, forced = versions.with_images(c.ClusterSpec(vitess_image="vitess/lite:v24.0.0-mysql80"), choice, force=True)
    assert len(forced) == 1 and forced[0].endswith("Going on: force.")
    with pytest.raises(ValueError, match="images not chosen: vitess_image, mysqld_image, vtadmin_image"):
        c.render(c.ClusterSpec(), "example", "example", "10.0.0.11", "u", "pw")


@pytest.mark.parametrize("release", SHIPPED)
def test_a_releases_own_manifest_gets_its_own_operator_image(release):
    docs = load_manifest(str(files(release) / "examples" / "operator-latest.yaml"))
    assert versions.manifest_version(docs) is None, "the end-to-end manifest carries a placeholder image"
    pinned = versions.pin_operator_image(docs, versions.release(release))
    assert versions.manifest_version(pinned) == release
    container = next(d for d in pinned if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"planetscale/vitess-operator:{release}" and "imagePullPolicy" not in container
    assert versions.manifest_version(docs) is None, "the documents read are not changed"


def test_a_manifest_of_another_release_than_the_pin_is_refused():
    docs = load_manifest(str(files("v2.17.0") / "examples" / "operator.yaml"))  # runs v2.17.0-rc1
    assert versions.operator_for(docs, "operator.yaml", None) == ("v2.17.0-rc1", "as the given manifest runs it")
    assert versions.operator_for(docs, "operator.yaml", "v2.17.0") == ("v2.17.0", "as pinned")
    assert versions.choose("v1.33.5", "v2.17.0-rc1", pinned_by="as the given manifest runs it").reason.startswith(
        "vitess-operator v2.17.0-rc1 as the given manifest runs it (the table's v2.17 row: v2.17.0); Vitess v24.0.0")
    with pytest.raises(ConfigError, match=r"manifest operator.yaml: runs vitess-operator v2.17.0-rc1, not the "
                                          r"pinned v2.16.0"):
        versions.operator_for(docs, "operator.yaml", "v2.16.0")
    assert versions.MANIFEST_URL.format(version="v2.10.4").endswith("/v2.10.4/test/endtoend/operator/operator-latest.yaml")


def test_the_readmes_table_is_the_version_table():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| (v2\.\d+\.\d+) \| (1\.\d+) - (1\.\d+) \| (\d+) \| `([^`]+)`", readme, re.M)
    assert rows == [(r.operator, *r.kubernetes, str(r.vitess_major), r.images().vitess) for r in reversed(versions.RELEASES)]


@pytest.mark.parametrize("release", versions.RELEASES, ids=lambda r: r.operator)
def test_fits_rules_on_the_users_nodes_validate_against_every_releases_crd(release):
    from tasks import sizing

    nodes = [{"metadata": {"name": n, "labels": {"node-role.kubernetes.io/control-plane": "true"}},
              "status": {"allocatable": {"cpu": cpu, "memory": mem}}}
             for n, cpu, mem in (("n1", "2", "4Gi"), ("n2", "1", "2Gi"), ("n3", "2", "4Gi"))]
    spec = c.ClusterSpec(**release.images().fields(), size="fit")
    sized = sizing.fit(spec, c.node_room(nodes, [], "example"))
    vc = sizing.apply_to(rendered(release), sized, "example")
    docs = [yaml.safe_load((files(release.operator) / "crds" / "planetscale.com_vitessclusters.yaml").read_text())]
    lacking = c.unsupported(vc, docs)
    # v2.10 cannot size the exporter sidecar: init_cluster then leaves it at the operator's default
    assert lacking == ([] if release.operator != "v2.10.4" else
                       ["spec.keyspaces[0].partitionings[0].equal.shardTemplate.tabletPools[0].mysqldExporter"])
    c.validate_cluster(sizing.apply_to(rendered(release), sized, "example", exporter=not lacking), docs)
