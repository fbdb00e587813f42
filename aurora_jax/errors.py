"""Typed errors. Every error that bad input can cause names the field and what is allowed.

The HTTP layer maps these to status codes (``status`` attribute): a subclass of
:class:`AuroraError` never becomes a 500.
"""

from __future__ import annotations


class AuroraError(Exception):
    """Base class of every error this project raises on purpose."""

    status: int = 400


class InvalidParameterError(AuroraError, ValueError):
    """A parameter is outside its allowed range.

    ``field`` names the parameter, ``allowed`` states the allowed range or set, ``value``
    is what was given.
    """

    status = 422

    def __init__(self, field: str, value: object, allowed: str, reason: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.reason = reason
        msg = f"{field}={value!r} is invalid: allowed {allowed}"
        if reason:
            msg += f" ({reason})"
        super().__init__(msg)


class UnknownAssetError(AuroraError, KeyError):
    """The asset id is not in the store or the configuration."""

    status = 404

    def __init__(self, asset_id: str, known: list[str]):
        self.asset_id = asset_id
        self.known = sorted(known)
        super().__init__(f"asset_id={asset_id!r} is unknown: known assets are {self.known}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataRangeError(AuroraError):
    """A requested time is outside the data that exists (e.g. ``as_of`` after the last value)."""

    status = 422

    def __init__(self, field: str, value: object, first: object, last: object):
        self.field = field
        self.value = value
        self.first = first
        self.last = last
        super().__init__(
            f"{field}={value} is outside the available data: allowed {first} .. {last}"
            f" (last available timestamp {last})"
        )


class IngestError(AuroraError):
    """A source file could not be parsed; nothing from it was written.

    ``path`` is the file and ``line`` the 1-based line (or array element) that failed.
    """

    status = 422

    def __init__(self, path: str, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class ConfigError(AuroraError):
    """The configuration (experiment name, config key) is invalid."""

    status = 400


class ModelUnavailableError(AuroraError):
    """The model or data needed to answer is not available right now (HTTP 503)."""

    status = 503


class ConnectorError(AuroraError):
    """A remote data source failed after all retries, or answered with a client error."""

    status = 502

    def __init__(self, url: str, reason: str, status_code: int | None = None):
        self.url = url
        self.status_code = status_code
        super().__init__(f"{url}: {reason}")
