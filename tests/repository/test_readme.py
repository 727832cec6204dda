"""Every Python and shell block of README.md and of the guides in docs/ runs as written, on a CPU and without the model
hub, in the order of the files (README.md first, then docs/ by name) and of their blocks; a block that cannot (it
needs a GPU or the Hub, or it is this test suite) says why in a marker comment above it.

Shell blocks run in the repository root with the project's environment first on PATH (the README assumes it is
active); QUICKSTART_MAX_STEPS keeps the quickstart short (scripts/quickstart.sh documents it). Python blocks run in a
temporary folder.
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
SKIP = re.compile(r"<!-- readme-test: skip \((.+)\) -->")


@dataclass
class Snippet:
    language: str
    code: str
    line: int
    skip_reason: str | None
    file: str = "README.md"


DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def snippets(document: str = "README.md") -> list[Snippet]:
    lines = (ROOT / document).read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w*)", lines[i])
        if fence:
            end = lines.index("```", i + 1)
            marker = SKIP.fullmatch(lines[i - 1].strip()) if i else None
            if fence.group(1) in ("python", "bash"):
                code = "\n".join(lines[i + 1 : end])
                found.append(Snippet(fence.group(1), code, i + 1, marker.group(1) if marker else None, document))
            i = end
        i += 1
    return found


def all_snippets() -> list[Snippet]:
    return [snippet for document in DOCUMENTS for snippet in snippets(document)]


def test_every_block_runs_or_says_why():
    blocks = all_snippets()
    runnable = [s for s in blocks if s.skip_reason is None]
    assert len(runnable) >= 8, [s.line for s in runnable]
    assert {s.language for s in runnable} == {"python", "bash"}
    for snippet in blocks:
        if snippet.skip_reason is not None:
            # the reasons a block may not run here: a GPU, the Hub, a package download, the test suite itself
            assert re.search(r"GPU|Hub|downloads|test suite", snippet.skip_reason), (snippet.file, snippet.line)
    # The quickstart and the test command are among the README's blocks (its two commands).
    codes = [s.code for s in snippets("README.md")]
    assert any(c.startswith("bash scripts/quickstart.sh") for c in codes)
    assert any(c.startswith("bash scripts/test.sh") for c in codes)


def test_readme_blocks_run_as_written(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "symnoise_cache"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SYMNOISE_TRL_CACHE": str(cache),
        "QUICKSTART_MAX_STEPS": "5",
    }
    for folder in ("quickstart", "resumable", "my-data"):  # the README's output folders: each block starts afresh
        shutil.rmtree(ROOT / "outputs" / folder, ignore_errors=True)
    workdir = tmp_path_factory.mktemp("readme")
    ran = 0
    for snippet in all_snippets():
        if snippet.skip_reason is not None:
            continue
        if snippet.language == "python":
            command, cwd = [sys.executable, "-c", snippet.code], workdir
        else:
            command, cwd = ["bash", "-euo", "pipefail", "-c", snippet.code], ROOT
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{snippet.file} line {snippet.line}:\n{snippet.code}\n{done.stderr[-3000:]}"
        ran += 1
        if snippet.code.startswith("bash scripts/quickstart.sh"):
            assert "held-out loss" in done.stdout and "exact match" in done.stdout, done.stdout[-2000:]
            assert "Verdict: after training" in done.stdout and "untrained" in done.stdout, done.stdout[-2000:]
            # only its own lines: no library's word about bitsandbytes' optional Hub kernel (hf/internals.py)
            stray = [line for line in (done.stdout + done.stderr).splitlines() if "kernels-community" in line]
            assert not stray, stray
    assert ran >= 8
    assert (ROOT / "outputs" / "quickstart" / "eval" / "metrics.json").exists()
    assert (ROOT / "outputs" / "resumable" / "checkpoint-60").is_dir()
    assert (workdir / "outputs" / "readme-sft").is_dir()  # the TRL script block trained and saved there
    assert (workdir / "outputs" / "readme-plain").is_dir()  # docs/trainers.md's plain Trainer block too


if __name__ == "__main__":
    for s in all_snippets():
        print(s.file, s.line, s.language, s.skip_reason or "run")
