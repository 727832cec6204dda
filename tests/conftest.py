import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the kernel has no a*b+c; this only silences a warning


def pytest_configure(config):
    # Triton reads TRITON_INTERPRET when it is first imported, and the test modules import it: this runs before they
    # are collected (`import torch` does not import Triton). `pytest -m gpu` on a machine with CUDA runs the compiled
    # kernel on CUDA tensors; every other run interprets it on CPU tensors.
    if not (config.getoption("markexpr") == "gpu" and torch.cuda.is_available()):
        os.environ["TRITON_INTERPRET"] = "1"
