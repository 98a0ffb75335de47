"""What commands that talk to a server share: its URL, credentials, and one blocking client.

    with Remote(server, token=token) as remote:
        job = remote.call("GET", f"/v1/tenants/{tenant}/jobs/{job_id}")

Credentials come from `--token` (an access token, `LOGLINE_TOKEN`) or `--api-key`
(`LOGLINE_API_KEY`); error responses become the SDK's `ApiError`s and unreachable servers a
`ConnectionFailed`, which `main` prints as one `error:` line.
"""

from __future__ import annotations

from types import TracebackType
from typing import Annotated, Any

import httpx
import typer

from logline import __version__
from logline.client.errors import error_for
from logline.client.transport import failure
from logline.errors import Unauthenticated

TIMEOUT_S = 30.0

ServerOption = Annotated[
    str,
    typer.Option("--server", envvar="LOGLINE_SERVER", show_envvar=True,
                 help="The server's base URL."),
]  # fmt: skip
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="LOGLINE_TOKEN", show_default=False,
                 help="An access token (from a login)."),
]  # fmt: skip
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="LOGLINE_API_KEY", show_default=False,
                 help="An API key (llk_...), instead of a token."),
]  # fmt: skip
TenantOption = Annotated[str, typer.Option("--tenant", envvar="LOGLINE_TENANT", help="Tenant.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON.")]
DEFAULT_SERVER = "http://127.0.0.1:8470"


class Remote:
    """A blocking client for one server and one credential."""

    def __init__(self, server: str, *, token: str | None = None, api_key: str | None = None):
        headers = {"User-Agent": f"logline-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif api_key:
            headers["X-API-Key"] = api_key
        else:
            raise Unauthenticated("give --token (or LOGLINE_TOKEN) or --api-key (LOGLINE_API_KEY)")
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=TIMEOUT_S)

    def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """The JSON of a 2xx response; an `ApiError` for any other, `ConnectionFailed` for none."""
        try:
            response = self.http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise failure(exc) from exc
        if not response.is_success:
            headers = {name.lower(): value for name, value in response.headers.items()}
            raise error_for(response.status_code, headers, response.content)
        return response.json() if response.content else None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
