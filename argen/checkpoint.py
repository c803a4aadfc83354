"""Model checkpoints: a directory with ``config.json`` (class + constructor arguments)
and ``model.safetensors``. Nothing is pickled; directories are written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.overrides import TorchFunctionMode

from argen.config import ConfigError, from_dict, to_dict

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, incomplete or does not match the model."""


def replace_directory(tmp: str | Path, target: str | Path) -> Path:
    """Move the finished directory ``tmp`` onto ``target``: the previous ``target`` is set
    aside first and removed last, so at every moment one complete copy exists (at ``target``,
    or for the instant between the two renames beside it as ``.<name>.old``)."""
    tmp, target = Path(tmp), Path(target)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def atomic_file(path: str | Path, write: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (ending in ``suffix``, for writers
    that read the format from the name), then rename it onto ``path``: a reader (another
    process) sees the old file or the new one, never a partial one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small text file atomically (see :func:`atomic_file`)."""
    atomic_file(path, lambda tmp: tmp.write_text(text))


def atomic_directory(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` then move ``tmp_dir`` onto ``target`` (replacing it).

    A crash while writing leaves the previous ``target`` untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        return replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_model(
    model: torch.nn.Module,
    directory: str | Path,
    state: dict[str, torch.Tensor] | None = None,
    records: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` (which has a dataclass ``config``) as config.json + model.safetensors.

    ``state`` replaces ``model.state_dict()`` (e.g. one consolidated from FSDP shards);
    ``records`` (keys starting with ``_``, e.g. the generator's ``_paradigm``) join the config
    beside ``_class_name``.
    """
    records = records or {}
    if any(not key.startswith("_") for key in records):
        raise ValueError(f"record keys start with '_', got {sorted(records)}")
    config = {"_class_name": type(model).__name__, **records, **to_dict(model.config)}
    state = model.state_dict() if state is None else state
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def write(tmp: Path) -> None:
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        save_file(state, str(tmp / WEIGHTS_NAME))

    return atomic_directory(directory, write)


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in {directory}: not a checkpoint directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None


class SkippedRandomInit(TorchFunctionMode):
    """Random initialisers (``torch.nn.init``'s and the in-place ``uniform_`` / ``normal_`` they
    call) as no-ops, for this thread's ops only: nothing in torch is patched."""

    SKIPPED = frozenset(
        {
            torch.Tensor.uniform_,
            torch.Tensor.normal_,
            torch.nn.init.uniform_,
            torch.nn.init.normal_,
            torch.nn.init.kaiming_uniform_,
        }
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


@contextmanager
def built_for_loading():
    """Build a model whose weights are all loaded right after: its random initialisers do no
    work, and the global RNG is left as it was (loading a model never moves later draws)."""
    with torch.random.fork_rng(devices=[]), SkippedRandomInit():
        yield


def load_model(directory: str | Path, classes: dict[str, type]) -> torch.nn.Module:
    """Rebuild the model recorded in ``directory`` from one of ``classes`` and load its weights."""
    directory = Path(directory)
    config = read_config(directory)
    name = config.pop("_class_name", None)
    config = {k: v for k, v in config.items() if not k.startswith("_")}  # records (_paradigm, ...)
    if name not in classes:
        raise CheckpointError(f"{directory} holds a {name!r}; this loader knows {sorted(classes)}")
    cls = classes[name]
    try:
        with built_for_loading():
            model = cls(from_dict(cls.Config, config))
    except ConfigError as err:
        raise CheckpointError(f"{directory}/{CONFIG_NAME}: {err}") from None
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME}")
    state = read_weights(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{weights} does not match its {CONFIG_NAME}: {err}") from None
    return model.eval()


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a truncated or corrupt file is an error that names it."""
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error type for damaged files
        raise CheckpointError(
            f"{path} is damaged ({err}); copy it again, or resume the run from its last checkpoint "
            f"(--resume) if it was being written"
        ) from None


def is_run(path: Path) -> bool:
    """A run directory (model/, ema/, tokenizer/) rather than a model directory or file."""
    return not ((path / CONFIG_NAME).is_file() or path.is_file())


def weights_of(run: Path, choice: str | None) -> Path:
    """The model directory of a run: ``choice``, else ema when the run has it."""
    return run / (choice or ("ema" if (run / "ema").is_dir() else "model"))
