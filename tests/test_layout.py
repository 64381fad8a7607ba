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
