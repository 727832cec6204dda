"""Quickstart: the cache folder, and folders built there once, atomically (the tiny model, offline models)."""

import os
import shutil
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """$SYMNOISE_TRL_CACHE, else ~/.cache/symnoise_trl."""
    return Path(os.environ.get("SYMNOISE_TRL_CACHE", Path.home() / ".cache" / "symnoise_trl"))


def built_once(path: Path, build, marker: str = "config.json") -> Path:
    """The folder `path`, made on first use by `build(folder)` into a staging folder that then takes its name: a
    concurrent builder either wins or finds the folder complete (it has the file `marker`), and a failed build leaves
    nothing behind."""
    if (path / marker).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    try:
        build(staging)
        os.replace(staging, path)
    except OSError:
        if not (path / marker).exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
