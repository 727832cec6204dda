"""The layout is the architecture: imports point one way, docs/architecture.md's file map matches the tree, every
package folder is packaged, and the repository's `kernels/` folder never poses as Hugging Face's `kernels` package."""

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "symnoise_trl"
# Layers of the installed package, lowest first, one folder each: a module may import from its own layer and those
# before it. The package's own __init__.py (the lazy public API) and __main__.py sit at the top, beside the folders.
LAYERS = ["kernels", "noise", "hf", "trainers", "integrations", "quickstart", "cli", "research"]
THIRD_PARTY_HF = ("transformers", "trl", "peft", "datasets", "accelerate")


def layer_of(path: Path) -> str:
    if path.is_relative_to(ROOT / "kernels"):
        return "kernels"
    relative = path.relative_to(PACKAGE)
    if len(relative.parts) == 1:
        return {"__main__.py": "cli", "__init__.py": "kernels"}[relative.name]  # the lazy API imports nothing eagerly
    return relative.parts[0]


def module_package(path: Path) -> str:
    """The dotted package that relative imports in `path` resolve against."""
    if path.is_relative_to(ROOT / "kernels"):
        parts = ["symnoise_trl", "kernels", *path.relative_to(ROOT / "kernels").parent.parts]
    else:
        parts = ["symnoise_trl", *path.relative_to(PACKAGE).parent.parts]
    return ".".join(parts)


def imported_layers(path: Path) -> set[str]:
    """The package layers (and Hugging Face libraries) that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), module_package(path))
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for parts in (name.split(".") for name in names):
            if parts[0] in THIRD_PARTY_HF:
                found.add(parts[0])
            elif parts[0] == "symnoise_trl" and len(parts) > 1:
                if parts[1] in LAYERS:
                    found.add(parts[1])
                elif parts[1] == "__main__":
                    found.add("cli")
    return found


def package_files():
    return sorted([*PACKAGE.rglob("*.py"), *(ROOT / "kernels").rglob("*.py")])


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    layer = layer_of(path)
    imported = imported_layers(path)
    above = {other for other in imported if other in LAYERS and LAYERS.index(other) > LAYERS.index(layer)}
    assert not above, f"{path.relative_to(ROOT)} ({layer}) imports from a layer above it: {above}"
    if layer in ("kernels", "noise"):  # torch (and Triton) only
        assert not imported & set(THIRD_PARTY_HF), f"{layer} must not import {imported & set(THIRD_PARTY_HF)}"


def test_the_import_checker_sees_upward_imports():
    # The rule above must be able to fail: modules importing layers above them, and Hugging Face libraries.
    assert imported_layers(PACKAGE / "research" / "ablate.py") >= {"cli", "research"}
    assert "quickstart" in imported_layers(PACKAGE / "cli" / "command.py")
    assert imported_layers(PACKAGE / "trainers" / "sft_trainer.py") >= {"trainers", "hf", "trl"}
    assert imported_layers(PACKAGE / "hf" / "support.py") >= {"kernels", "noise", "hf"}


# Private or undocumented names of transformers and TRL that the package relies on: hf/internals.py alone uses them.
HF_INTERNALS = ("_total_train_tokens", "_metrics", "current_gradient_accumulation_steps", "loss_is_scaled_for_ga",
                "model_accepts_loss_kwargs", "compute_loss_func", "router_aux_loss_coef", "parallelism_config",
                "_tag_names", "_paper", "_name")  # fmt: skip


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_private_hf_names_live_in_one_adapter(path):
    if path == PACKAGE / "hf" / "internals.py":
        assert all(name in path.read_text() for name in HF_INTERNALS)
        return
    names = {n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)}
    names |= {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)}
    used = sorted(set(HF_INTERNALS) & names)
    assert not used, f"{path.relative_to(ROOT)} uses {used}: put it in symnoise_trl/hf/internals.py"


def test_each_module_says_where_it_sits():
    prefixes = {"kernels": "Kernels: ", "noise": "Noise: ", "hf": "HF: ", "trainers": "Trainers: ",
                "integrations": "Integrations: ", "quickstart": "Quickstart: ", "cli": "CLI: ",
                "research": "Research: "}  # fmt: skip
    for path in package_files():
        if path == PACKAGE / "__init__.py":
            continue  # the package's own docstring names the project
        first = ast.get_docstring(ast.parse(path.read_text())).splitlines()[0]
        assert first.startswith(prefixes[layer_of(path)]), f"{path.relative_to(ROOT)}: its first line names its layer"


def documented_layout() -> list[str]:
    """The paths docs/architecture.md's file map lists (its "Layout" section)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    paths, folder = [], ""
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        names = re.split(r"\s{2,}", line.strip())[0]
        for name in names.split(", "):
            if line.startswith(" "):
                paths.append(folder + name)
            else:
                paths.append(name)
                folder = name if name.endswith("/") else ""
    return paths


def test_the_documented_layout_matches_the_tree():
    listed = documented_layout()
    assert len(listed) >= 30
    missing = [p for p in listed if not (ROOT / p).exists()]
    assert not missing, f"docs/architecture.md's layout lists paths that do not exist: {missing}"
    modules = [p for p in [*PACKAGE.rglob("*.py"), *(ROOT / "kernels").glob("*.py")] if p.name != "__init__.py"]
    folders = [p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"]
    unlisted = [str(p.relative_to(ROOT)) + ("/" if p.is_dir() else "") for p in [*modules, *folders]]
    unlisted = [p for p in unlisted if p not in listed and p != "symnoise_trl/__main__.py"]
    assert not unlisted, f"docs/architecture.md's layout does not list: {unlisted}"


def test_every_package_folder_is_packaged():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    # setuptools warns about (and may drop) a folder of the package that is not in `packages`.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(config["packages"])
    folders = {
        "symnoise_trl." + ".".join(p.relative_to(PACKAGE).parts)
        for p in PACKAGE.rglob("*")
        if p.is_dir() and p.name != "__pycache__"
    }
    assert folders <= packages, f"not in [tool.setuptools] packages: {sorted(folders - packages)}"
    assert config["package-dir"]["symnoise_trl.kernels"] == "kernels"


def test_kernels_folder_hands_over_to_an_installed_kernels_package(tmp_path):
    # Hugging Face's `kernels` installed (as in any Axolotl environment; faked here in a second site folder): from the
    # repository root, `import kernels` must give that package, not this folder, and transformers must see it.
    site = tmp_path / "site"
    (site / "kernels").mkdir(parents=True)
    (site / "kernels" / "__init__.py").write_text('__version__ = "0.12.0"\nfrom .hub import get_kernel\n')
    (site / "kernels" / "hub.py").write_text("def get_kernel(name):\n    return 'hub kernel ' + name\n")
    (site / "kernels-0.12.0.dist-info").mkdir()
    (site / "kernels-0.12.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: kernels\nVersion: 0.12.0\n"
    )
    code = """
import kernels
from kernels import get_kernel
print(kernels.__version__, kernels.__file__.startswith(sys.argv[1]), get_kernel("x"))
import symnoise_trl.kernels as k
print("op", k.symnoise.__name__)
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", "import sys\n" + code, str(site)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["0.12.0 True hub kernel x", "op symnoise"]


def hugging_face_kernels_installed() -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution("kernels")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def python_without_hugging_face_kernels(tmp_path) -> list[str]:
    """A command line for this interpreter in a world where Hugging Face's `kernels` is not installed: its own site
    folders left out (-S), a copy of them as links without `kernels` added back (with their .pth files: the editable
    install of this project among them)."""
    import site

    mirror = tmp_path / "site-without-kernels"
    mirror.mkdir()
    for folder in map(Path, site.getsitepackages()):
        for entry in folder.iterdir():
            if entry.name != "kernels" and not entry.name.startswith("kernels-"):
                (mirror / entry.name).symlink_to(entry)
    return [sys.executable, "-S", "-c", f"import site; site.addsitedir({str(mirror)!r})\n"]


ABSENT_WORLD = """
import kernels
assert not hasattr(kernels, "__version__") and kernels.__file__.endswith("__init__.py")
try:
    from kernels import get_kernel
except ModuleNotFoundError as error:
    print("absent", error.name, str(error))
from transformers.utils.import_utils import is_kernels_available
print("available", is_kernels_available())
from transformers import LlamaConfig
print("config", LlamaConfig.__name__)
import symnoise_trl.kernels as k  # the real package still loads beside it (one torch.library registration)
print("op", k.symnoise.__name__)
"""


@pytest.mark.floors
def test_kernels_folder_poses_as_no_package_where_hugging_faces_is_not_installed(tmp_path):
    # From the repository root the folder is importable as `kernels`, Hugging Face's kernel hub package, which
    # bitsandbytes (`from kernels import get_kernel`) and transformers (`is_kernels_available`) probe. Where that
    # package is installed (transformers >= 5.25 requires it) this world is made by leaving it out of the path.
    python = (
        python_without_hugging_face_kernels(tmp_path)
        if hugging_face_kernels_installed()
        else [sys.executable, "-c", ""]
    )
    done = subprocess.run([*python[:-1], python[-1] + ABSENT_WORLD], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("absent kernels No module named 'kernels'") and "symnoise_trl.kernels" in lines[0]
    assert lines[1:] == ["available False", "config LlamaConfig", "op symnoise"]


@pytest.mark.floors
def test_from_the_repository_root_an_installed_hugging_face_kernels_is_the_one_imported():
    # transformers 5.25 requires Hugging Face's `kernels` and imports it with LlamaConfig: from the repository root
    # that import must reach the installed package, not this folder.
    if not hugging_face_kernels_installed():
        pytest.skip("Hugging Face's kernels is not installed here (transformers < 5.25): the test above is this world")
    code = """
import kernels, transformers
print(os.path.dirname(kernels.__file__) == sys.argv[1], kernels.__version__ == importlib.metadata.version("kernels"))
from transformers import LlamaConfig
print("config", LlamaConfig.__name__, transformers.utils.import_utils.is_kernels_available())
import symnoise_trl.kernels as k
print("op", k.symnoise.__name__)
"""
    command = [sys.executable, "-c", "import importlib.metadata, os, sys\n" + code, str(ROOT / "kernels")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["False True", "config LlamaConfig True", "op symnoise"]
