"""Prompt validation at the command line: empty, undecodable and over-long prompts."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


class PromptError(ValueError):
    """A prompt cannot be used."""


def read_prompts_file(path: str | Path) -> list[str]:
    """One prompt per line (blank lines skipped); the file must be UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"prompts file {path} does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise PromptError(f"{path}, line {line}: not valid UTF-8 ({err.reason})") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise PromptError(f"prompts file {path} holds no prompts")
    return prompts


def check_prompts(prompts: list[str]) -> list[str]:
    """Reject empty or non-UTF-8 prompts; returns them stripped."""
    if not prompts:
        raise PromptError("no prompts given")
    for i, prompt in enumerate(prompts):
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:  # undecodable command-line bytes arrive as surrogates
            raise PromptError(f"prompt {i} is not valid UTF-8: {prompt!r}") from None
        if not prompt.strip():
            raise PromptError(f"prompt {i} is empty")
    return [p.strip() for p in prompts]


def warn_truncated(prompts: list[str], token_counts: list[int], max_length: int) -> int:
    """Warn about each prompt longer than ``max_length`` tokens; returns how many there are."""
    long = [(p, n) for p, n in zip(prompts, token_counts) if n > max_length]
    for prompt, count in long:
        logger.warning("prompt %r has %d tokens; truncated to %d", prompt[:60], count, max_length)
    return len(long)
