"""CI's lock and newest lanes allow no skip but the GPU tests' (and the Axolotl module's, which has its own lane):
tests/conftest.py turns any other skip into a failure there (SYMNOISE_ONLY_GPU_SKIPS=1, set by scripts/test.sh)."""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parents[1]

CASES = {
    "test_some.py": "import pytest\n\n@pytest.mark.gpu\ndef test_on_a_gpu():\n    pytest.skip('no GPU')\n\n"
    "def test_on_the_cpu():\n    pytest.skip('a package is missing')\n",
    "test_module.py": "import pytest\n\npytest.importorskip('no_such_package_anywhere')\n",
    "test_axolotl.py": "import pytest\n\npytest.importorskip('no_such_package_anywhere')\n",
}


def run_pytest(folder: Path, only_gpu_skips: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "SYMNOISE_ONLY_GPU_SKIPS": "1" if only_gpu_skips else "0"}
    command = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-o", "markers=gpu: a GPU",
               "-q", "-rfs", str(folder)]  # fmt: skip
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_a_skip_outside_the_gpu_tests_fails_where_only_gpu_skips_are_allowed(tmp_path):
    items, module = tmp_path / "items", tmp_path / "module"
    for folder, names in ((items, ("test_some.py", "test_axolotl.py")), (module, ("test_module.py",))):
        folder.mkdir()
        for name in names:
            (folder / name).write_text(CASES[name])
    (items / "gpu").mkdir()  # a folder named gpu does not make its tests GPU tests: the marker does
    (items / "gpu" / "test_check_script.py").write_text(
        "import pytest\n\ndef test_it():\n    pytest.skip('no tool')\n"
    )
    done = run_pytest(items, only_gpu_skips=True)
    assert done.returncode == 1, done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("2 failed, 2 skipped"), done.stdout
    assert "FAILED test_some.py::test_on_the_cpu" in done.stdout and "a package is missing" in done.stdout
    assert "FAILED gpu/test_check_script.py::test_it" in done.stdout
    done = run_pytest(module, only_gpu_skips=True)  # a module skipped whole: a collection error, and the run stops
    assert done.returncode == 2 and "ERROR collecting test_module.py" in done.stdout, done.stdout
    assert "no_such_package_anywhere" in done.stdout
    for folder, skipped, code in ((items, 4, 0), (module, 1, 5)):  # 5: pytest collected no test
        relaxed = run_pytest(folder, only_gpu_skips=False)
        assert relaxed.returncode == code and f"{skipped} skipped" in relaxed.stdout.strip().splitlines()[-1]
