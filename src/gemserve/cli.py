"""``gemserve`` command line: ``gemserve serve [--host] [--port] [--data-dir] [--config]``."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import sys
from pathlib import Path

import uvicorn

from gemserve.config import Settings, load_settings
from gemserve.hosts import is_loopback


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
    return parser


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
            "require_keys": args.require_keys,
        }
    try:
        settings = load_settings(overrides)
    except (ValueError, OSError) as exc:
        print(f"gemserve: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "keys":
        return asyncio.run(_keys(args, settings))
    if not is_loopback(settings.host) and not settings.require_keys:
        print(
            f"gemserve: refusing to listen on {settings.host} without --require-keys: open mode "
            "accepts any API key and is for loopback only.",
            file=sys.stderr,
        )
        return 2
    _configure_logging(settings.log_level)
    # A fatal native signal (an instruction the CPU traps, a crash in llama.cpp) writes every
    # thread's Python stack to stderr before the process dies by that signal.
    faulthandler.enable()
    from gemserve.api.header_deadline import header_deadline_protocol
    from gemserve.app import create_app

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
    if fatal:
        print(f"gemserve: stopped: {fatal[0]}", file=sys.stderr)
        return 1
    if not server.started:
        return 3  # as uvicorn.run: the lifespan or the socket failed
    return 0


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    floor = max(logging.WARNING, logging.root.level)
    # Its debug lines carry every SQL parameter, request bodies included.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.root.level))
    # Alembic narrates every plugin and migration at INFO; the store logs one line instead.
    logging.getLogger("alembic").setLevel(floor)


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
