"""The product apart from its double: what each product module may import (AST over the tree)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("flows", "tasks", "blocks", "deployments", "vtflow")
# each external library behind one client module (STYLE.md principle 3)
ONE_USER = {"kubernetes": "vtflow/kube.py", "paramiko": "vtflow/ssh.py", "pymysql": "vtflow/mysql.py"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def product_modules() -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): imports(p) for d in PRODUCT for p in sorted((ROOT / d).rglob("*.py"))}


def test_no_product_module_imports_the_double():
    modules = product_modules()
    assert len(modules) > 40, "the walk found the product"
    offenders = {m: sorted(i & {"kubedouble", "kubernetes_validate"}) for m, i in modules.items()
                 if i & {"kubedouble", "kubernetes_validate"}}
    assert offenders == {}


def test_each_client_library_has_one_product_module():
    modules = product_modules()
    for library, owner in ONE_USER.items():
        users = sorted(m for m, i in modules.items() if library in i)
        assert users == [owner], f"{library} is imported by {users}"


def test_the_double_does_not_sit_inside_the_product():
    assert not (ROOT / "vtflow" / "kubedouble").exists()
    assert (ROOT / "kubedouble" / "__main__.py").exists()


def without_the_double(tmp_path) -> dict:
    """An environment in which the double and its extra cannot be imported: stand-ins first on
    PYTHONPATH that raise ImportError, as a plain `pip install .` (no `sandbox` extra) would."""
    import os

    for name in ("kubedouble", "kubernetes_validate"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed (test stand-in)')\n")
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}


def test_the_cli_and_every_flow_load_without_the_double(tmp_path):
    import subprocess
    import sys

    env = without_the_double(tmp_path)
    # run from elsewhere: `python -c` puts the working directory first on sys.path, and the
    # checkout's own kubedouble/ would shadow the stand-in (it did when pytest ran from the checkout)
    probe = subprocess.run([sys.executable, "-c", "import kubedouble"], env=env, capture_output=True, text=True,
                           cwd=tmp_path)
    assert probe.returncode != 0 and "test stand-in" in probe.stderr, "the stand-in blocks the double"
    modules = sorted(m[:-3].replace("/", ".") for m in product_modules()
                     if not m.endswith("__main__.py"))
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m.removesuffix('.__init__'))"
    loaded = subprocess.run([sys.executable, "-c", code, *modules], env=env, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    cli = subprocess.run([sys.executable, "-m", "vtflow.cli", "--help"], env=env, capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert cli.returncode == 0 and "deploy" in cli.stdout, cli.stderr[-2000:]
