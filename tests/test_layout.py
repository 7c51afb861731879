"""The layers of the package (cycleapp/__init__.py): the core imports nothing from the evaluation or
the app, the evaluation nothing from the app, and the Python API and the Pillow plug-in reach only
the core (so `cycleapp.encode` does not load the classical codecs' registry)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cycleapp"
# what each layer may import from the package, besides itself
ALLOWED = {"core": (), "evaluation": ("cycleapp.core", "cycleapp.imageio"),
           "app": ("cycleapp.core", "cycleapp.evaluation", "cycleapp.imageio")}


def package_imports(path: Path) -> set[str]:
    """The cycleapp modules a source file imports, relative imports resolved."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found |= {f"{base}.{a.name}" for a in node.names}
    return {name for name in found if name == "cycleapp" or name.startswith("cycleapp.")}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    own = f"cycleapp.{layer}"
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    wrong = {f"{path.relative_to(PACKAGE.parent)}: {name}" for path in files for name in package_imports(path)
             if not name.startswith(own) and not any(name.startswith(a) for a in ALLOWED[layer])}
    assert not wrong, sorted(wrong)


def test_the_check_sees_a_wrong_import(tmp_path, monkeypatch):
    bad = PACKAGE / "core" / "codec.py"
    fake = tmp_path / "cycleapp" / "core" / "codec.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(bad.read_text() + "\nfrom ..evaluation import registry\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "cycleapp")
    assert "cycleapp.evaluation.registry" in package_imports(fake)


def test_the_api_and_the_plugin_load_only_the_core():
    code = ("import sys, cycleapp, cycleapp.api, cycleapp.pillow; "
            "print(sorted(m for m in sys.modules if m.startswith(('cycleapp.evaluation', 'cycleapp.app'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    assert out.strip() == "[]", out
