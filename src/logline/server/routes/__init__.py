"""The API routes, one module per resource.

Paths that name an identity use the `llid` convertor: a LogLine ID contains `/`, and matching it
exactly (instead of with `path`) keeps `/members/{identity}/sessions/revoke` from being read as
a member called `.../sessions/revoke`.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor

from logline.identity.ids import ID_KINDS


class LogLineIdConvertor(Convertor[str]):
    regex = rf"logline-id://(?:{'|'.join(ID_KINDS)})/[a-z0-9](?:[a-z0-9._-]{{0,62}}[a-z0-9])?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("llid", LogLineIdConvertor())
