"""Kernels: the compute core of symnoise-trl, the fused SymNoise Triton kernel and its bit-exact torch reference.

Installed as `symnoise_trl.kernels`; depends on torch (and optionally triton) only. docs/noise-stream.md is the
specification it implements.
"""

if __name__ == "kernels":
    # NOTE: from the repository root (`python -m ...`, `python -c ...`, any tool started there) this folder is
    # importable as `kernels`, the name of Hugging Face's kernel hub package, which transformers, bitsandbytes and
    # Axolotl use. Imported under that name it loads nothing of ours (a second copy would register the torch.library
    # op twice). It hands the import to Hugging Face's package when one is installed elsewhere on the path: the
    # import system returns whatever sys.modules holds after this module ran. Otherwise it answers like an absent
    # package: no version (transformers' availability check then says no), and `from kernels import x` raises
    # ModuleNotFoundError, which the callers' fallbacks expect. `import kernels` itself cannot raise: transformers
    # imports the module to look for a version and does not catch that. (So hasattr(kernels, name) raises too.)
    import importlib.machinery
    import importlib.util
    import os
    import sys

    def _installed_kernels_spec():
        repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = [entry for entry in sys.path if os.path.abspath(entry or os.getcwd()) != repository]
        return importlib.machinery.PathFinder.find_spec("kernels", path)

    _spec = _installed_kernels_spec()
    if _spec is not None:
        _module = importlib.util.module_from_spec(_spec)
        sys.modules["kernels"] = _module
        _spec.loader.exec_module(_module)
    else:

        def __getattr__(name):
            if name.startswith("__"):
                raise AttributeError(name)
            raise ModuleNotFoundError(
                "No module named 'kernels' (the folder kernels/ here is symnoise-trl's source, installed as "
                "symnoise_trl.kernels; Hugging Face's `kernels` package is not installed)",
                name="kernels",
            )

else:
    from .reference import philox4x32, rademacher
    from .symnoise_op import symnoise, triton_available

    __all__ = ["philox4x32", "rademacher", "symnoise", "triton_available"]
