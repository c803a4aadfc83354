"""Hugging Face Hub references wherever argen takes a checkpoint: ``owner/name`` (a whole
repository: an argen run, a model directory, a diffusers VAE), ``owner/name:file`` (one file,
e.g. an official ``.pt``) and either with ``@revision`` (a branch, tag or commit), optionally
written ``hf://owner/name...``. A reference resolves to a local path in ``huggingface_hub``'s
cache (downloaded on first use; read from the cache alone when ``HF_HUB_OFFLINE=1``); a path that
exists locally is never taken for a reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from argen.checkpoint import CheckpointError

PREFIX = "hf://"
REFERENCE = re.compile(
    r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?::(?P<file>[^@]+))?(?:@(?P<revision>[\w./-]+))?"
)


@dataclass(frozen=True)
class HubReference:
    repo: str
    file: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        file = f":{self.file}" if self.file else ""
        revision = f"@{self.revision}" if self.revision else ""
        return f"{self.repo}{file}{revision}"


def parse_reference(text: str | Path) -> HubReference | None:
    """The Hub reference ``text`` names, or None for a local path (one that exists, or that
    does not have a reference's shape)."""
    text = str(text)
    explicit = text.startswith(PREFIX)
    if explicit:
        text = text[len(PREFIX) :]
    elif Path(text).exists() or text.startswith((".", "/", "~")):
        return None
    match = REFERENCE.fullmatch(text)
    if match is None:
        if explicit:
            raise CheckpointError(f"{PREFIX}{text} is not a Hub reference (owner/name[:file][@revision])")
        return None
    return HubReference(**match.groupdict())


def resolve(text: str | Path) -> Path:
    """A local path for a local path or a Hub reference (downloaded into the Hub cache)."""
    reference = parse_reference(text)
    if reference is None:
        return Path(text)
    return download(reference)


def download(reference: HubReference) -> Path:
    """The reference's file, or its repository's snapshot, in the Hub cache."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return fetch(reference)
    except LocalEntryNotFoundError:  # before EntryNotFoundError, its base
        reason = "not in the Hub cache, and the Hub cannot be reached (HF_HUB_OFFLINE=1, or no network)"
    except RevisionNotFoundError:
        reason = f"{reference.repo} has no revision {reference.revision}"
    except RepositoryNotFoundError:
        reason = f"no repository {reference.repo} on the Hub (or a private one: log in with `hf auth login`)"
    except EntryNotFoundError:
        reason = f"{reference.repo} has no file {reference.file}"
    raise CheckpointError(f"{reference}: {reason}; no local path of that name exists either")


def fetch(reference: HubReference) -> Path:
    """Download (or find in the cache) a repository's snapshot, a file, or a folder of files."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    repo, file, revision = reference.repo, reference.file, reference.revision
    if file is None:
        return Path(snapshot_download(repo, revision=revision))
    try:
        return Path(hf_hub_download(repo, file, revision=revision))
    except EntryNotFoundError:  # not a file (or not cached): perhaps a folder, e.g. a run's tokenizer/
        folder = Path(snapshot_download(repo, revision=revision, allow_patterns=[f"{file}/*"])) / file
        if folder.is_dir():
            return folder
        raise


def cached_blob(path: str | Path) -> str | None:
    """For a file downloaded into the Hub cache, its blob name (the Hub's hash of its content);
    None for any other path."""
    blob = Path(path).resolve()
    return blob.name if blob.parent.name == "blobs" and Path(path).is_file() else None
