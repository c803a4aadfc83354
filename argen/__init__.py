"""argen: autoregressive visual generation. ``argen.load(path)`` reads any generator or
tokenizer checkpoint (argen directories, official LlamaGen / VAR files, diffusers VAEs)."""

from __future__ import annotations


def __getattr__(name: str):
    if name == "load":  # imported on first use: ``import argen`` stays light
        from argen.convert.loaders import load

        return load
    raise AttributeError(f"module 'argen' has no attribute {name!r}")
