"""scripts/gpu_check.sh and its summary, where they can run without a GPU: argument handling, the one-line refusal
without CUDA, the install into a fresh environment from a local wheel folder without dependencies, the summary."""

import base64
import csv
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_summary  # noqa: E402


def gpu_check(*args, **env):
    return subprocess.run(["bash", "scripts/gpu_check.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **env}, timeout=300)  # fmt: skip


def test_without_cuda_it_refuses_in_one_line():
    done = gpu_check()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"gpu_check: no CUDA GPU here ({sys.executable} has no torch that sees one); run it on a CUDA machine"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus"], "unknown argument '--bogus'"),
        (["--wheels"], "--wheels needs a folder"),
        (["--wheels", "no/such/folder"], "--wheels no/such/folder is not a folder"),
        (["--only", "tests,bench"], "unknown phase 'bench' in --only"),
        (["--only", "tests"], "--only without install needs --site DIR"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(args, message):
    done = gpu_check(*args)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("gpu_check: error: ") and message in line


def test_wheelhouse_needs_a_folder():
    done = subprocess.run(["bash", "scripts/wheelhouse.sh"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "usage: bash scripts/wheelhouse.sh DIR" in done.stderr


def dummy_wheel(folder: Path) -> None:
    """A pure-Python wheel that requires a package nowhere to be found: installed without dependencies, it works."""
    name, version = "symnoise_dummy", "1.0"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Dist: no-such-pkg\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    digest = {p: base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b"=").decode() for p, c in
              files.items()}  # fmt: skip
    files[f"{info}/RECORD"] = (
        "".join(f"{p},sha256={digest[p]},{len(c)}\n" for p, c in files.items()) + f"{info}/RECORD,,\n"
    )
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, content in files.items():
            wheel.writestr(path, content)


def test_install_phase_puts_the_project_and_the_wheels_in_the_site_without_dependencies(tmp_path):
    wheels, site, tools = tmp_path / "wheels", tmp_path / "site", tmp_path / "tools"
    wheels.mkdir()
    dummy_wheel(wheels)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)  # no torch, no project
    fresh = tmp_path / "venv" / "bin" / "python"
    # A current setuptools builds the project (no build isolation: a GPU machine without network has no index),
    # copied from here as a CUDA image would have one installed.
    tools.mkdir()
    subprocess.run(["cp", "-r", str(Path(setuptools.__file__).parent), str(tools)], check=True)
    done = gpu_check("--only", "install", "--wheels", str(wheels), "--site", str(site), PYTHON=str(fresh),
                     PYTHONPATH=str(tools))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"installed symnoise-trl and 1 wheels into {site}" in done.stdout
    assert (site / "symnoise_trl" / "kernels" / "symnoise_op.py").is_file()  # kernels/ mapped into the package
    assert (site / "symnoise_trl" / "quickstart" / "data" / "train.jsonl").is_file()
    assert (site / "symnoise_dummy" / "__init__.py").is_file()
    installed = {p.name.split("-")[0] for p in site.glob("*.dist-info")}
    assert installed == {"symnoise_trl", "symnoise_dummy"}  # no dependency of either came along
    listed = subprocess.run([str(fresh), "-m", "pip", "list"], capture_output=True, text=True, check=True).stdout
    assert "symnoise" not in listed  # the environment itself is as it was


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_summary_compares_each_figure_with_its_target(tmp_path):
    folder = tmp_path / "gpu_nvidia_h200"
    folder.mkdir()
    shape = {"tokens": 16384, "hidden": 4096, "dtype": "bfloat16"}
    write_csv(folder / "kernel_nvidia_h200.csv", [
        {"provider": "symnoise", "direction": "forward", **shape, "% of copy": 91.0, "x eager": 7.5, "x compile": 1.3},
        {"provider": "symnoise", "direction": "backward", **shape, "% of copy": 80.0, "x eager": 1.0, "x compile": 1},
        {"provider": "symnoise", "direction": "forward", "tokens": 2048, "hidden": 4096, "dtype": "bfloat16",
         "% of copy": 10.0, "x eager": 0.1, "x compile": 0.1},  # another shape: not the target's
    ])  # fmt: skip
    write_csv(folder / "train_step_nvidia_h200.csv", [
        {"model": "100m", "mode": "symnoise", "time_vs_sft": 1.98, "memory_vs_sft": 1.6},
        {"model": "100m", "mode": "symnoise_two_pass", "time_vs_sft": 2.2, "memory_vs_sft": 1.2},
    ])  # fmt: skip
    (folder / "tests.log").write_text("....\n===== 14 passed, 1 skipped in 80.1s =====\n")
    text = gpu_summary.main([str(folder)])
    assert (folder / "summary.md").read_text() == text
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["`pytest -m gpu`"].endswith("| 14 passed, 1 skipped | all pass | yes |")
    assert rows["forward, % of the copy roofline's bandwidth (16384 x 4096 bf16)"].endswith("| 91 | >= 85 | yes |")
    assert rows["forward, speed-up over eager Algorithm 2"].endswith("| 7.5 | >= 5 | yes |")
    assert rows["backward, % of the copy roofline (within 10%)"].endswith("| 80 | >= 90.9 | no |")
    assert rows["training step time vs plain SFT, equal real tokens (100m)"].endswith("| 1.98 | <= 2.05 | yes |")
    assert rows["two-pass peak memory vs plain SFT (100m)"].endswith("| 1.2 | <= 1.1 | no |")
    qlora = next(v for k, v in rows.items() if k.startswith("QLoRA"))
    assert qlora.endswith("| missing | < 24 | missing |")


def test_summary_reports_failed_tests(tmp_path):
    (tmp_path / "tests.log").write_text("===== 2 failed, 12 passed in 9.0s =====\n")
    assert "| `pytest -m gpu` | 12 passed, 2 failed | all pass | no |" in gpu_summary.summary(tmp_path)
