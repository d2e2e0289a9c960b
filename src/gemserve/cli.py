"""``gemserve`` command line: ``gemserve serve [--host] [--port] [--data-dir] [--config]``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

import uvicorn

from gemserve.config import load_settings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Gemini API")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    serve.add_argument("--data-dir", type=Path, help="state directory")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--slots", type=int, help="sequences decoded together per model")
    serve.add_argument("--threads", type=int, help="llama.cpp threads")
    serve.add_argument("--log-level", help="critical|error|warning|info|debug")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        "host": args.host,
        "port": args.port,
        "data_dir": args.data_dir,
        "config": args.config,
        "slots": args.slots,
        "threads": args.threads,
        "log_level": args.log_level,
    }
    try:
        settings = load_settings(overrides)
    except (ValueError, OSError) as exc:
        print(f"gemserve: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(settings.host):
        print(
            "gemserve: this release accepts any API key and therefore serves loopback only; "
            f"refusing to listen on {settings.host}. Put an authenticating proxy in front.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from gemserve.app import create_app

    try:
        app = create_app(settings)
    except (ValueError, OSError) as exc:
        print(f"gemserve: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
