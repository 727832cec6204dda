"""scripts/gpu_check.sh and its summary, where they can run without a GPU: argument handling, the one-line refusal
without CUDA, the install from a local wheel folder without dependencies, the time limits and the budget, and the
summary, also from a run whose phases failed or ran out of time."""

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
import torch

ROOT = Path(__file__).resolve().parents[2]
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
        (["--out", "pyproject.toml"], "--out pyproject.toml is a file, not a folder"),
        (["--budget", "0"], "--budget needs a whole number of seconds > 0"),
        (["--budget"], "--budget needs a whole number of seconds > 0"),
        (["--limit", "bench=3"], "--limit bench=3: PHASE=SECONDS with a phase from install,tests"),
        (["--limit", "tests"], "--limit tests: PHASE=SECONDS"),
        (["--limit", "=5"], "--limit =5: PHASE=SECONDS"),
        (["--limit", "tests=1.5"], "--limit tests=1.5: the seconds must be a whole number > 0"),
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


def results(out: Path) -> dict:
    """What a run left in --out: the phases' rows, and the file names (each directly in the folder)."""
    with open(out / "phases.csv") as f:
        phases = {row["phase"]: row for row in csv.DictReader(f)}
    return {"phases": phases, "files": sorted(p.name for p in out.iterdir())}


def test_install_phase_puts_the_project_and_the_wheels_in_the_site_without_dependencies(tmp_path):
    # As on the GPU machine: an environment with torch and the rest installed, and the project nowhere on its path but
    # in the site folder. A current setuptools builds it (no build isolation: that machine has no index).
    wheels, site, out = tmp_path / "wheels", tmp_path / "site", tmp_path / "out"
    wheels.mkdir()
    dummy_wheel(wheels)
    tools = tmp_path / "tools"
    tools.mkdir()
    subprocess.run(["cp", "-r", str(Path(setuptools.__file__).parent), str(tools)], check=True)
    out.mkdir()
    (out / "kernel_nvidia_h200.csv").write_text("an earlier run's figures\n")  # not this run's: removed
    done = gpu_check("--only", "install", "--wheels", str(wheels), "--site", str(site), "--out", str(out),
                     PYTHONPATH=str(tools))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"installed symnoise-trl and 1 wheels into {site}" in done.stdout
    assert (site / "symnoise_trl" / "kernels" / "symnoise_op.py").is_file()  # kernels/ mapped into the package
    assert (site / "symnoise_trl" / "quickstart" / "data" / "train.jsonl").is_file()
    assert (site / "symnoise_dummy" / "__init__.py").is_file()
    installed = {p.name.split("-")[0] for p in site.glob("*.dist-info")}
    assert installed == {"symnoise_trl", "symnoise_dummy"}  # no dependency of either came along
    run = results(out)
    assert run["files"] == ["gpu_check.log", "phases.csv", "summary.md"]
    assert [(p, r["status"]) for p, r in run["phases"].items()] == [("install", "ok"), ("summary", "ok")]
    versions = next(line for line in (out / "gpu_check.log").read_text().splitlines() if line.startswith("versions:"))
    assert f"torch {torch.__version__}" in versions and "symnoise-trl 0.1.0" in versions
    summary = (out / "summary.md").read_text()
    assert versions.removeprefix("versions: ") in summary and "| install | ok |" in summary
    assert "| `pytest -m gpu` | missing | all pass | missing |" in summary


def hanging_pip(tmp_path) -> Path:
    """An interpreter whose `-m pip` hangs: an install that never ends. Everything else runs as usual."""
    path = tmp_path / "python"
    path.write_text(f'#!/usr/bin/env bash\n[ "$1 $2" = "-m pip" ] && sleep 120\nexec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return path


def test_a_phase_past_its_limit_is_stopped_and_the_summary_still_written(tmp_path):
    out = tmp_path / "out"
    done = gpu_check("--only", "install", "--site", str(tmp_path / "site"), "--out", str(out), "--limit",
                     "install=2", PYTHON=str(hanging_pip(tmp_path)))  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("gpu_check: failed or out of time: install")
    run = results(out)
    assert run["phases"]["install"]["status"] == "timed out" and run["phases"]["install"]["limit_s"] == "2"
    assert int(run["phases"]["install"]["seconds"]) < 30  # stopped, not waited for
    assert run["phases"]["summary"]["status"] == "ok"
    assert "| install | timed out |" in (out / "summary.md").read_text()


def test_the_budget_bounds_every_phase_and_keeps_the_summarys_share(tmp_path):
    # 25 s in all, 20 of them kept for the summary: the install gets 5 s whatever its own limit.
    out = tmp_path / "out"
    done = gpu_check("--only", "install", "--site", str(tmp_path / "site"), "--out", str(out), "--budget", "25",
                     "--limit", "install=300", PYTHON=str(hanging_pip(tmp_path)))  # fmt: skip
    assert done.returncode == 1
    install = results(out)["phases"]["install"]
    assert (install["status"], install["limit_s"]) == ("timed out", "5")
    assert (out / "summary.md").is_file()


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
    (folder / "gpu_check.log").write_text(
        "== phase tests (limit 180 s)\n....\n===== 14 passed, 1 skipped in 80.1s =====\n"
        "== phase tests: ok (exit 0) after 81 s\n"
    )
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
    (tmp_path / "gpu_check.log").write_text("== phase tests (limit 9 s)\n===== 2 failed, 12 passed in 9.0s =====\n")
    assert "| `pytest -m gpu` | 12 passed, 2 failed | all pass | no |" in gpu_summary.summary(tmp_path)


def test_summary_of_a_run_cut_short_reports_what_each_phase_left(tmp_path):
    # The kernel benchmark ran out of time after its forward rows; train_step failed; qlora had no time left.
    write_csv(tmp_path / "phases.csv", [
        {"phase": "install", "status": "ok", "seconds": 12, "limit_s": 60, "exit_code": 0},
        {"phase": "tests", "status": "ok", "seconds": 95, "limit_s": 180, "exit_code": 0},
        {"phase": "kernel", "status": "timed out", "seconds": 100, "limit_s": 100, "exit_code": 124},
        {"phase": "train_step", "status": "failed", "seconds": 7, "limit_s": 110, "exit_code": 1},
        {"phase": "qlora", "status": "no time left", "seconds": 0, "limit_s": 0, "exit_code": ""},
    ])  # fmt: skip
    (tmp_path / "gpu_check.log").write_text(
        "== phase install (limit 60 s)\nversions: torch 2.11.0, triton 3.6.0\n"
        "== phase install: ok (exit 0) after 12 s\n"
        "== phase tests (limit 180 s)\n===== 31 passed in 90.2s =====\n"
        "== phase tests: ok (exit 0) after 95 s\n"
        "== phase kernel (limit 100 s)\n===== 1 passed in 1s =====\n"  # not pytest's: another phase's line
    )  # fmt: skip
    write_csv(tmp_path / "kernel_nvidia_h200.csv", [
        {"provider": "symnoise", "direction": "forward", "tokens": 16384, "hidden": 4096, "dtype": "bfloat16",
         "% of copy": 88.0, "x eager": 6.1, "x compile": 1.2, "device": "NVIDIA H200"},
    ])  # fmt: skip
    text = gpu_summary.main([str(tmp_path)])
    assert text.startswith("# GPU check: NVIDIA H200\n\ntorch 2.11.0, triton 3.6.0\n")
    for row in ("| kernel | timed out | 100 | 100 |", "| train_step | failed | 7 | 110 |",
                "| qlora | no time left | 0 | 0 |", "| `pytest -m gpu` | 31 passed | all pass | yes |",
                "| forward, % of the copy roofline's bandwidth (16384 x 4096 bf16) | 88 | >= 85 | yes |",
                "| backward, % of the copy roofline (within 10%) | missing | >= 90.9 | missing |",
                "| training step time vs plain SFT, equal real tokens (100m) | missing | <= 2.05 | missing |",
                ):  # fmt: skip
        assert row in text, row
