"""`gemserve models pull REPO/FILE.gguf`: a GGUF from the Hugging Face Hub into the data dir's
cache, checked against the hub's SHA-256, and the `[[models]]` entry that serves it.

The file lands in the Hugging Face cache layout under ``<data-dir>/cache/huggingface``
(``hf_hub_download``: its locks, its offline fallback, Xet-backed repos). A plain-HTTP file is
fetched into ``blobs/<etag>.incomplete`` first and resumed from there by the next run after an
interrupted one (huggingface_hub itself resumes only within one call); ``hf_hub_download``
then links the finished blob into its snapshot. Offline (``HF_HUB_OFFLINE=1``, or the hub
unreachable) a file already in the cache is used, and checked against its blob's name (an LFS
file's ETag is its SHA-256).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from gemserve.config import ModelSpec, Settings
from gemserve.config.gguf import GGUFError, GGUFHeader, cpu_batching_warning, read_header
from gemserve.terminal.models import human_size

_HUB_URL = re.compile(r"^https?://(?:www\.)?huggingface\.co/(.+?)/(?:resolve|blob)/([^/]+)/(.+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The context written into a pulled model's entry when the model was trained for more: the KV
# cache holds slots x context_length tokens, so a CPU host starts with a modest one.
PULLED_CONTEXT_CAP = 8192


class PullError(Exception):
    """A failure with a message for the user; exit status 1."""


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str | None

    @classmethod
    def parse(cls, ref: str, revision: str | None) -> HubFile:
        """``owner/repo/path/to/file.gguf``, or its huggingface.co URL."""
        match = _HUB_URL.match(ref)
        if match is not None:
            repo_id, url_revision, filename = match.groups()
            return cls(repo_id, filename, revision or url_revision)
        parts = ref.strip("/").split("/")
        if len(parts) < 3 or not all(parts):
            raise PullError(
                f"{ref!r} is not OWNER/REPO/FILE.gguf (e.g. bartowski/Qwen2.5-0.5B-Instruct-GGUF/"
                "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf)"
            )
        return cls("/".join(parts[:2]), "/".join(parts[2:]), revision)


def cache_dir(settings: Settings) -> Path:
    return settings.data_dir / "cache" / "huggingface"


def pull(
    settings: Settings,
    ref: str,
    *,
    revision: str | None = None,
    write: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        file = HubFile.parse(ref, revision)
        path, header, sha = _fetch(file, cache_dir(settings), err)
        entry = model_entry(file, path, header, sha)
        if write is None:
            print(entry, file=out, end="")
        else:
            append_entry(write, entry)
            print(f"added model {model_id(file.filename)!r} to {write}", file=err)
    except PullError as exc:
        print(f"gemserve: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _fetch(file: HubFile, cache: Path, err: TextIO) -> tuple[Path, GGUFHeader, str | None]:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache.mkdir(parents=True, exist_ok=True)
    where = f"{file.repo_id}/{file.filename}" + (f"@{file.revision}" if file.revision else "")
    expected: str | None = None
    online = not constants.is_offline_mode()
    if online:
        try:
            expected = _hub_sha256(file)
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
            raise PullError(f"{where} is not on the hub: {_first_line(exc)}") from None
        except HfHubHTTPError as exc:
            if exc.response is not None and exc.response.status_code in (401, 403):
                raise PullError(
                    f"{where}: access denied (set HF_TOKEN?): {_first_line(exc)}"
                ) from None
            online = False
            print(f"gemserve: the hub answered {_first_line(exc)}; trying the cache", file=err)
        except Exception as exc:  # unreachable, whatever the HTTP client calls it
            online = False
            print(
                f"gemserve: the hub is unreachable ({_first_line(exc)}); trying the cache", file=err
            )
    if online:
        try:
            _download_resumable(file, cache, err)
        except PullError:
            raise
        except Exception as exc:
            raise PullError(
                f"downloading {where} failed: {_first_line(exc)}; run again to resume"
            ) from None
    try:
        path = Path(
            hf_hub_download(
                file.repo_id,
                file.filename,
                revision=file.revision,
                cache_dir=cache,
                local_files_only=not online,
            )
        )
    except LocalEntryNotFoundError:
        raise PullError(
            f"{where} is not in the cache ({cache}) and the hub cannot be reached"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise PullError(f"{where} is not on the hub: {_first_line(exc)}") from None
    except HfHubHTTPError as exc:
        raise PullError(f"{where}: {_first_line(exc)}") from None
    blob = path.resolve()
    if expected is None and _SHA256.match(blob.name):
        expected = blob.name  # an LFS file's blob is named by its ETag, its SHA-256
    if expected is None:
        print(f"gemserve: warning: the hub gives no SHA-256 for {where}; not checked", file=err)
    else:
        actual = _sha256(blob, file.filename)
        if actual != expected:
            for leftover in (path, blob):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise PullError(
                f"SHA-256 mismatch for {where}: the hub says {expected}, the downloaded file is "
                f"{actual}. The file was deleted and no configuration was written; run the "
                "command again to download it anew."
            )
        print(f"sha256 {actual} OK", file=err)
    try:
        header = read_header(path)
    except (GGUFError, OSError) as exc:
        raise PullError(f"{path} is not a usable GGUF file: {exc}") from None
    if header.batches_badly_on_cpu and header.weight_type is not None:
        print(f"gemserve: warning: {cpu_batching_warning(header.weight_type)}", file=err)
    return path, header, expected


def _hub_sha256(file: HubFile) -> str | None:
    """The LFS SHA-256 the hub lists for the file; None for a file not stored in LFS."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import EntryNotFoundError

    infos = HfApi().get_paths_info(
        file.repo_id, [file.filename], revision=file.revision, expand=True
    )
    for info in infos:
        if info.path == file.filename and hasattr(info, "lfs"):
            return None if info.lfs is None else str(info.lfs.sha256).lower()
    raise EntryNotFoundError(f"no file {file.filename!r} in {file.repo_id}")


def _download_resumable(file: HubFile, cache: Path, err: TextIO) -> None:
    """Fetch a plain-HTTP file into ``blobs/<etag>.incomplete``, from where an earlier run
    stopped, then move it to ``blobs/<etag>`` (``hf_hub_download`` links it from there).
    Xet-backed files are left to ``hf_hub_download`` (Xet keeps its own chunk cache)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get, repo_folder_name
    from huggingface_hub.utils._headers import build_hf_headers

    meta = get_hf_file_metadata(hf_hub_url(file.repo_id, file.filename, revision=file.revision))
    if meta.xet_file_data is not None or not meta.etag or meta.size is None:
        return
    blobs = cache / repo_folder_name(repo_id=file.repo_id, repo_type="model") / "blobs"
    blob = blobs / meta.etag
    if blob.exists():
        return
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blob.with_name(blob.name + ".incomplete")
    with partial.open("ab") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PullError(f"another pull of {file.filename} is running") from None
        if fh.tell() > meta.size:
            fh.truncate(0)
            fh.seek(0)
        resumed = fh.tell()
        started = time.monotonic()
        if resumed:
            print(f"resuming {file.filename} at {resumed} of {meta.size} bytes", file=err)
        try:
            http_get(
                meta.location,
                fh,
                resume_size=resumed,
                headers=build_hf_headers(),
                expected_size=meta.size,
                displayed_filename=Path(file.filename).name,
            )
        except KeyboardInterrupt:
            fh.flush()
            print(
                f"\ninterrupted: {fh.tell()} bytes kept in {partial}; run again to resume",
                file=err,
            )
            raise
        fh.flush()
        os.fsync(fh.fileno())
    partial.replace(blob)
    if not err.isatty():  # no progress bar there: one line instead
        took = time.monotonic() - started
        got = meta.size - resumed
        print(
            f"downloaded {human_size(got)} of {Path(file.filename).name} in {took:.1f} s", file=err
        )


def _sha256(path: Path, label: str) -> str:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    digest = hashlib.sha256()
    size = path.stat().st_size
    with (
        path.open("rb") as fh,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"sha256 {Path(label).name}",
            disable=None if size > 64 * 1024 * 1024 else True,
            leave=False,
        ) as bar,
    ):
        while chunk := fh.read(4 * 1024 * 1024):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def model_id(filename: str) -> str:
    """The id of a pulled model: its file name, lower-cased, without ``.gguf``."""
    stem = Path(filename).name.removesuffix(".gguf").removesuffix(".GGUF").lower()
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._")
    return cleaned or "model"


def model_entry(file: HubFile, path: Path, header: GGUFHeader, sha: str | None) -> str:
    """The ``[[models]]`` TOML entry serving ``path``; validated as `serve` would."""
    mid = model_id(file.filename)
    quant = header.quantization
    name = header.name or Path(file.filename).name.removesuffix(".gguf")
    display = f"{name} ({quant})" if quant and quant not in name else name
    trained = header.context_length
    context = min(trained, PULLED_CONTEXT_CAP) if trained else 4096
    lines = [
        "[[models]]",
        f"id = {_toml_str(mid)}",
        f"source = {_toml_str(str(path))}",
        f"display_name = {_toml_str(display)}",
        f"context_length = {context}"
        + (
            f"    # trained: {trained}; the KV cache holds slots x context_length"
            if trained
            else ""
        ),
        f"# pulled from {file.repo_id}@{path.parent.name}" + (f", sha256 {sha}" if sha else ""),
    ]
    template = header.chat_template or ""
    thinking = "<think>" in template and "</think>" in template
    if thinking:
        lines += ["[models.thinking]", 'mode = "native"    # the chat template writes <think>']
    text = "\n".join(lines) + "\n"
    try:
        (entry,) = tomllib.loads(text)["models"]
        ModelSpec.model_validate(entry)
    except (tomllib.TOMLDecodeError, ValidationError, ValueError) as exc:
        raise PullError(f"could not make a valid [[models]] entry: {exc}") from None
    return text


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def append_entry(config: Path, entry: str) -> None:
    """Append ``entry`` to ``config``, refusing an id already there or a result that does not
    parse; the file is replaced in one rename."""
    old = config.read_text() if config.exists() else ""
    try:
        existing = tomllib.loads(old).get("models", [])
    except tomllib.TOMLDecodeError as exc:
        raise PullError(f"{config} is not valid TOML: {exc}") from None
    (new,) = tomllib.loads(entry)["models"]
    if any(isinstance(m, dict) and m.get("id") == new["id"] for m in existing):
        raise PullError(f"{config} already has a model with id {new['id']!r}; nothing written")
    separator = "" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
    text = old + separator + entry
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PullError(f"appending to {config} would not parse ({exc}); nothing written") from None
    config.parent.mkdir(parents=True, exist_ok=True)
    temp = config.with_name(config.name + ".tmp")
    temp.write_text(text)
    if config.exists():
        os.chmod(temp, config.stat().st_mode & 0o777)
    temp.replace(config)
