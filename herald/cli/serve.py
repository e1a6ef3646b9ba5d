"""`herald serve`: the HTTP API, the admin page and the health endpoints (herald.web)."""

from __future__ import annotations

import argparse
import sys


def cmd_serve(args: argparse.Namespace) -> int:
    from herald.bootstrap import bootstrap
    from herald.cli.database import open_herald
    from herald.config import load_settings
    from herald.errors import ConfigError
    from herald.web.serve import serve

    settings = load_settings()
    open_herald(settings).close()  # down or not migrated: one line now
    app = bootstrap(settings)
    try:
        serve(
            app,
            args.host or settings.api_host,
            settings.api_port if args.port is None else args.port,
            args.insecure_no_auth,
        )
    except ConfigError as exc:
        print(f"herald serve: {exc}", file=sys.stderr)
        return 2
    finally:
        app.close()
    return 0


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the HTTP API, the admin page and the health endpoints",
        description="The operators' HTTP face: /api (Bearer tokens from HERALD_API_TOKENS), "
        "the admin page at /, /livez, /readyz and /health.",
    )
    serve.add_argument("--host", help="interface to listen on (HERALD_API_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (HERALD_API_PORT, default 8080)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="run without tokens (refused unless the host is a loopback address)",
    )
    serve.set_defaults(func=cmd_serve)
