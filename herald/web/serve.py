"""`herald serve`: run the application on uvicorn, refusing to run open to the network."""

from __future__ import annotations

import ipaddress
import logging

from herald.config import ConfigError
from herald.web.services import WebServices

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_can_serve(services: WebServices, host: str, insecure_no_auth: bool) -> None:
    """No token configured: refuse, unless --insecure-no-auth and a loopback address."""
    if services.settings.api_tokens and not insecure_no_auth:
        return
    if not insecure_no_auth:
        raise ConfigError(
            "HERALD_API_TOKENS is empty: set viewer:TOKEN,operator:TOKEN "
            "(or pass --insecure-no-auth to serve on a loopback address without tokens)"
        )
    if not is_loopback(host):
        raise ConfigError(
            f"--insecure-no-auth serves everyone as operator: only on a loopback address, "
            f"not {host}"
        )


def serve(services: WebServices, host: str, port: int, insecure_no_auth: bool = False) -> None:
    """Serve until interrupted. Raises ConfigError when it must not start."""
    import uvicorn

    from herald.web.app import create_app

    check_can_serve(services, host, insecure_no_auth)
    if insecure_no_auth:
        logger.warning("herald serve: --insecure-no-auth: everyone on %s is an operator", host)
    app = create_app(services, insecure_no_auth=insecure_no_auth)
    # access_log off: uvicorn's access lines would carry query strings (a recipient's
    # address in a filter); the metrics count requests. Tokens travel in headers, never
    # logged. Proxy headers are believed from loopback only (uvicorn's default): behind a
    # local TLS proxy the session cookie is marked Secure.
    uvicorn.run(app, host=host, port=port, access_log=False, proxy_headers=True)
