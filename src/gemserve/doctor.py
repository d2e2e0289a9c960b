"""`gemserve doctor`: what a bug report needs, read without starting a server: versions, the
CPU and the llama.cpp build in use, the configured models and their files, the database (its
migration revision, never migrated here), the blob store, and whether request spans are
exported (the OTEL_* variables, as `serve` would read them). Exits 1 only when something it
must reach is unreachable (the database, the blob store, a model's file)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from gemserve.config import Settings
from gemserve.tracing import status as tracing_status

LIBRARIES = (
    "llama-cpp-python",
    "llguidance",
    "starlette",
    "uvicorn",
    "pydantic",
    "pydantic-settings",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "numpy",
    "av",
    "pillow",
    "faster-whisper",
    "ctranslate2",
    "prometheus-client",
    "httpx",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-asgi",
    "opentelemetry-exporter-otlp-proto-http",
)

# llama.cpp's own view of the CPU, in a child: a build that traps here must not take the
# report down with it.
_SYSTEM_INFO = (
    "from gemserve.engine.llama.native import init_backend; init_backend(); "
    "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
)


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {
        "gemserve": _version("gemserve"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for name in LIBRARIES:
        found[name] = _version(name)
    return found


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu() -> dict[str, Any]:
    """The machine, and the llama.cpp build and features in use (engine/cpu, variants.py)."""
    report: dict[str, Any] = {
        "machine": platform.machine(),
        "model": _cpu_model(),
        "cores": os.cpu_count(),
        "build": None,
        "system_info": None,
    }
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        report["error"] = "llama-cpp-python is not installed"
        return report
    from gemserve.engine.llama.variants import variant_libraries

    lib_dir = Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(spec.origin).parent / "lib")
    variants = variant_libraries(lib_dir)
    report["build"] = "portable" if variants else "native"
    if variants:
        report["variants"] = [path.name for path in variants]
    try:
        child = subprocess.run(
            [sys.executable, "-c", _SYSTEM_INFO],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        report["error"] = "llama.cpp did not initialise within 120 s"
        return report
    if child.returncode != 0:
        report["error"] = f"llama.cpp failed to initialise (exit {child.returncode})"
        report["stderr"] = child.stderr[-2000:]
    else:
        report["system_info"] = child.stdout.strip()
    return report


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def models(settings: Settings) -> tuple[list[dict[str, Any]], list[str]]:
    from gemserve.terminal.models import describe

    try:
        rows = describe(settings)
    except (ValueError, OSError) as exc:
        return [], [f"models: {exc}"]
    problems = [
        f"model {row.id}: file not found: {row.path}" for row in rows if row.exists is False
    ]
    return [asdict(row) for row in rows], problems


async def _database(settings: Settings) -> dict[str, Any]:
    import sqlalchemy as sa
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import create_async_engine

    from gemserve.store.sql import MIGRATIONS, database_url_for

    url = database_url_for(settings.database_url, settings.data_dir)
    shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    report: dict[str, Any] = {"url": shown, "head": head}
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and not await asyncio.to_thread(Path(database).exists):
            # Connecting would create it: say so instead (serve creates and migrates it).
            report.update(reachable=True, revision=None, note="not created yet")
            return report
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            revision = await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
        report.update(reachable=True, revision=revision, up_to_date=revision == head)
    except Exception as exc:
        report.update(reachable=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        await engine.dispose()
    return report


async def _blobs(settings: Settings) -> dict[str, Any]:
    report: dict[str, Any] = {"data_dir": str(settings.data_dir)}
    report["data_dir_writable"] = _writable(settings.data_dir)
    if not settings.blob_url:
        report["kind"] = "local"
        report["reachable"] = report["data_dir_writable"]
        return report
    from gemserve.store.blobs import open_blob_store

    report["kind"] = "s3"
    report["url"] = settings.blob_url
    try:
        store = open_blob_store(settings)
        async for _ in store.list("blobs"):
            break  # one listing call is the check
        report["reachable"] = True
    except Exception as exc:
        cause = exc.__cause__ or exc  # an outage's own words, not only "unavailable"
        report.update(reachable=False, error=f"{type(cause).__name__}: {cause}")
    return report


def _writable(directory: Path) -> bool:
    """Whether the data dir (or, before the first start, its nearest existing parent) takes
    a file."""
    target = directory
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".doctor-"):
            return True
    except OSError:
        return False


def report(settings: Settings) -> tuple[dict[str, Any], list[str]]:
    rows, problems = models(settings)

    async def stores() -> tuple[dict[str, Any], dict[str, Any]]:
        return await _database(settings), await _blobs(settings)

    database, blobs = asyncio.run(stores())
    if not database.get("reachable"):
        problems.append(f"database unreachable: {database.get('error')}")
    if not blobs.get("reachable"):
        problems.append(f"blob store unreachable: {blobs.get('error', 'data dir not writable')}")
    payload = {
        "versions": versions(),
        "cpu": cpu(),
        "settings": {
            "data_dir": str(settings.data_dir),
            "slots": settings.slots,
            "threads": settings.threads,
            "batch_tokens": settings.batch_tokens,
            "default_model": settings.default_model,
            "transcription_model": settings.transcription_model,
            "metrics_enabled": settings.metrics_enabled,
            "log_format": settings.log_format,
        },
        "models": rows,
        "database": database,
        "blobs": blobs,
        "tracing": tracing_status(),
        "problems": problems,
    }
    return payload, problems


def doctor(settings: Settings, *, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    payload, problems = report(settings)
    if as_json:
        print(json.dumps(payload, indent=2), file=out)
    else:
        _print_text(payload, out)
    return 1 if problems else 0


def _print_text(payload: dict[str, Any], out: TextIO) -> None:
    def section(title: str, items: dict[str, Any]) -> None:
        print(title, file=out)
        for key, value in items.items():
            if value is None or isinstance(value, list | dict):
                continue
            print(f"  {key + ':':<20}{value}", file=out)
        print(file=out)

    section("versions", payload["versions"])
    cpu_report = payload["cpu"]
    section("cpu", {k: v for k, v in cpu_report.items() if k != "system_info"})
    if cpu_report.get("system_info"):
        print(f"  llama.cpp: {cpu_report['system_info']}\n", file=out)
    print("models", file=out)
    for row in payload["models"]:
        where = row["path"] or ", ".join(row["upstreams"])
        state = "" if row["exists"] is not False else "  MISSING"
        size = f"  {row['size_bytes']} bytes" if row["size_bytes"] is not None else ""
        quant = f"  {row['quantization']}" if row["quantization"] else ""
        print(f"  {row['id']}: {where}{size}{quant}{state}", file=out)
    print(file=out)
    section("database", payload["database"])
    section("blobs", payload["blobs"])
    section("tracing", payload["tracing"])
    if payload["problems"]:
        print("problems", file=out)
        for problem in payload["problems"]:
            print(f"  {problem}", file=out)
    else:
        print("no problems found", file=out)
