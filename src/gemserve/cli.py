"""``gemserve`` command line: ``gemserve serve [--host] [--port] [--data-dir] [--config]``,
``keys``, ``chat``, ``models list|pull``, ``doctor``."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import sys
from pathlib import Path

import uvicorn

from gemserve.config import Settings, load_settings
from gemserve.hosts import is_loopback
from gemserve.logs import configure_logging


def _add_storage_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="state directory")
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite in the data dir)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Gemini API")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    _add_storage_flags(serve)
    serve.add_argument("--slots", type=int, help="sequences decoded together per model")
    serve.add_argument("--threads", type=int, help="llama.cpp threads")
    serve.add_argument("--log-level", help="critical|error|warning|info|debug")
    serve.add_argument(
        "--log-format", choices=["text", "json"], help="text (default) or one JSON object per line"
    )
    serve.add_argument(
        "--require-keys",
        action="store_true",
        default=None,
        help="accept only keys made with `gemserve keys create` (mandatory off loopback)",
    )
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="make a key and print it once")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--tenant", help="tenant the key belongs to (default: a new tenant)")
    _add_storage_flags(create)
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    _add_storage_flags(listing)
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    _add_storage_flags(revoke)
    _add_terminal_commands(commands)
    doctor = commands.add_parser(
        "doctor", help="versions, CPU, models, database and blob store, for bug reports"
    )
    doctor.add_argument("--json", action="store_true", help="JSON instead of text")
    _add_storage_flags(doctor)
    return parser


def _add_terminal_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`gemserve chat` and `gemserve models list|pull` (gemserve/terminal)."""
    chat = commands.add_parser("chat", help="chat with a model in the terminal")
    chat.add_argument("--url", help="a running server (default http://127.0.0.1:8080)")
    chat.add_argument("--api-key", help="API key (default $GEMINI_API_KEY, else any: open mode)")
    chat.add_argument(
        "--embedded", action="store_true", help="start a server of its own for this session"
    )
    chat.add_argument("--model", help="model name (default gemini-flash-latest: the default)")
    _add_storage_flags(chat)
    models = commands.add_parser("models", help="configured models; download GGUF files")
    actions = models.add_subparsers(dest="models_command", required=True)
    listing = actions.add_parser("list", help="the configured models and their GGUF files")
    listing.add_argument("--json", action="store_true", help="JSON instead of text")
    _add_storage_flags(listing)
    pull = actions.add_parser("pull", help="download a GGUF from the Hugging Face Hub")
    pull.add_argument(
        "ref", metavar="REPO/FILE.gguf", help="e.g. owner/repo-GGUF/model-Q4_K_M.gguf"
    )
    pull.add_argument("--revision", help="branch, tag or commit (default main)")
    pull.add_argument(
        "--write", type=Path, metavar="CONFIG.toml", help="append the [[models]] entry to this file"
    )
    _add_storage_flags(pull)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        "data_dir": args.data_dir,
        "config": args.config,
        "database_url": args.database_url,
    }
    if args.command == "serve":
        overrides |= {
            "host": args.host,
            "port": args.port,
            "slots": args.slots,
            "threads": args.threads,
            "log_level": args.log_level,
            "log_format": args.log_format,
            "require_keys": args.require_keys,
        }
    try:
        settings = load_settings(overrides)
    except (ValueError, OSError) as exc:
        print(f"gemserve: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "keys":
        return asyncio.run(_keys(args, settings))
    if args.command == "doctor":
        from gemserve.doctor import doctor

        return doctor(settings, as_json=args.json)
    if args.command in ("chat", "models"):
        return _terminal(args, settings)
    if not is_loopback(settings.host) and not settings.require_keys:
        print(
            f"gemserve: refusing to listen on {settings.host} without --require-keys: open mode "
            "accepts any API key and is for loopback only.",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # A fatal native signal (an instruction the CPU traps, a crash in llama.cpp) writes every
    # thread's Python stack to stderr before the process dies by that signal.
    faulthandler.enable()
    from gemserve.api.header_deadline import header_deadline_protocol
    from gemserve.app import create_app
    from gemserve.tracing import TracingConfigError, start_tracing

    try:
        tracing = start_tracing()  # OTEL_* variables: OpenTelemetry's global tracer provider
    except TracingConfigError as exc:
        print(f"gemserve: invalid configuration: {exc}", file=sys.stderr)
        return 2

    fatal: list[str] = []
    server: uvicorn.Server | None = None

    def stop(reason: str) -> None:
        fatal.append(reason)
        if server is not None:
            server.should_exit = True

    try:
        app = create_app(settings, on_fatal=stop)
    except (ValueError, OSError) as exc:
        print(f"gemserve: {exc}", file=sys.stderr)
        return 2
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,
            # Open streams get the drain time to finish (README: rolling restarts).
            timeout_graceful_shutdown=max(1, round(settings.drain_seconds)),
            log_config=None,  # uvicorn's few lines go through the one format configured above
            http=header_deadline_protocol(settings.limits.header_read_timeout_seconds),
        )
    )
    server.run()
    if tracing is not None:
        tracing.shutdown()  # the last spans are exported before the process ends
    if fatal:
        print(f"gemserve: stopped: {fatal[0]}", file=sys.stderr)
        return 1
    if not server.started:
        return 3  # as uvicorn.run: the lifespan or the socket failed
    return 0


def _terminal(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "chat":
        from gemserve.terminal.chat import run_chat

        return run_chat(
            settings,
            url=args.url,
            api_key=args.api_key,
            embedded=args.embedded,
            model=args.model,
            data_dir=args.data_dir,
        )
    if args.models_command == "list":
        from gemserve.terminal.models import list_models

        return list_models(settings, as_json=args.json)
    from gemserve.terminal.pull import pull

    return pull(settings, args.ref, revision=args.revision, write=args.write)


async def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from gemserve.app import open_store
    from gemserve.errors import NotFound
    from gemserve.service.keys import KeyManager

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = open_store(settings)
    await store.start()
    try:
        keys = KeyManager(store)
        if args.keys_command == "create":
            record, plaintext = await keys.create(args.name, args.tenant)
            print(f"id={record.id} tenant={record.tenant}", file=sys.stderr)
            print(plaintext)
        elif args.keys_command == "list":
            for record in await keys.list():
                state = "revoked" if record.revoked_at else "active"
                created = record.created_at.isoformat(timespec="seconds")
                print(f"{record.id}\t{record.tenant}\t{state}\t{created}\t{record.name}")
        else:
            try:
                await keys.revoke(args.key_id)
            except NotFound as exc:
                print(f"gemserve: {exc.message}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}", file=sys.stderr)
        return 0
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(main())
