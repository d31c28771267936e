"""Guest SDK for urlcap: HTTP through the authorities the host preopened for you.

A urlcap guest has no network of its own. The host preopens *authorities* (an origin, path
prefixes, methods and limits), and the guest sends requests relative to one of them, derives
narrower ones to hand on, and revokes what it derived::

    import urlcap

    api = urlcap.authority("api")
    items = api.get("/v1/items?page=2").json()

    # Hand a plugin less than you have: read-only, one path, five requests.
    view = api.derive(paths=["/v1/public/"], methods=["GET"], max_requests=5)
    try:
        view.get("/v1/admin")
    except urlcap.Denied as e:
        assert e.reason == "path_not_allowed"
    view.revoke()

Build a guest with componentize-py against the `urlcap:guest/command` world in `sdk/wit`
(this package on the Python path)::

    componentize-py -d sdk/wit -w urlcap:guest/command componentize app -p . -p sdk/python -o guest.wasm

This module wraps the bindings componentize-py generates from `wit/urlcap-http.wit` (the
`wit_world` package); it works in any world that includes `urlcap:http/imports`.
"""

from __future__ import annotations

import importlib
import json as _json
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from componentize_py_types import Err

__all__ = [
    "Authority",
    "Denied",
    "ExitStatus",
    "Response",
    "authorities",
    "authority",
    "run_sandbox",
]

Headers = Union[Mapping[str, Union[str, bytes]], Iterable[Tuple[str, Union[str, bytes]]]]
"""Request headers: a mapping, or (name, value) pairs when a name repeats."""

Body = Union[bytes, bytearray, memoryview, str, None]
"""A request body: bytes, or text sent as UTF-8."""


def _interface(name: str) -> ModuleType:
    # componentize-py names an imported interface after itself (`types`), or after its
    # package too (`urlcap_http_types`) when the world imports another interface of that name.
    for module in (f"wit_world.imports.urlcap_http_{name}", f"wit_world.imports.{name}"):
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    raise ImportError(
        f"urlcap:http/{name} is not among this component's imports: build it against a world "
        "that includes urlcap:http/imports (sdk/wit, world urlcap:guest/command)"
    )


_types = _interface("types")
_preopens = _interface("preopens")
_sandbox = _interface("sandbox")


def _reason_code(reason: Any) -> str:
    """The host's snake_case audit code for a WIT `error.reason`: componentize-py makes each
    case of the WIT enum `reason` (`path-not-allowed`) an `Enum` member in upper snake case
    (`PATH_NOT_ALLOWED`)."""
    return reason.name.lower()


class Denied(Exception):
    """The host refused: a request, a derivation or a nested sandbox.

    `reason` is the stable snake_case code the host's audit log records for the same event
    (`path_not_allowed`, `method_not_allowed`, `attenuation_widens`, `revoked`, `ip_denied`,
    `timeout`...); `detail` is human text.
    """

    reason: str
    detail: str

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    @classmethod
    def _from_wit(cls, error: Any) -> "Denied":
        return cls(_reason_code(error.reason), error.detail)


def _call(f: Any, *args: Any) -> Any:
    """Call a binding that returns `result<_, error>`, raising `Denied` for its error."""
    try:
        return f(*args)
    except Err as e:
        raise Denied._from_wit(e.value) from None


def _bytes(body: Body) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def _header_list(headers: Optional[Headers]) -> List[Tuple[str, bytes]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    # Header values are bytes on the wire; text is sent as Latin-1, as http.client does.
    return [(k, v.encode("latin-1") if isinstance(v, str) else bytes(v)) for k, v in pairs]


@dataclass
class Response:
    """A response as the server sent it (urlcap never follows redirects)."""

    status: int
    """The status code."""
    headers: List[Tuple[str, str]]
    """(name, value) pairs in the order received; values decoded as Latin-1 (lossless)."""
    body: bytes
    """The whole body (buffered by the host within the authority's limits)."""

    def text(self, encoding: str = "utf-8") -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode(encoding, "replace")

    def json(self) -> Any:
        """The body parsed as JSON (raises `ValueError` if it is not)."""
        return _json.loads(self.body)

    def header(self, name: str) -> Optional[str]:
        """The first value of header `name` (case-insensitive), or None."""
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> List[str]:
        """Every value of header `name` (case-insensitive), in order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Authority:
    """A capability to send some HTTP requests: to one origin, under some paths, with some
    methods and limits. Requests are relative to it; derive a narrower one to hand on."""

    def __init__(self, handle: Any, name: str) -> None:
        self._handle = handle
        self.name: str = name
        """The preopen name (a derived authority keeps its parent's)."""

    def __repr__(self) -> str:
        return f"<urlcap.Authority {self.name} {self.origin}>"

    @property
    def origin(self) -> str:
        """`scheme://host[:port]`; the host may be a `*.suffix` pattern."""
        return self._handle.origin()

    def describe(self) -> str:
        """Lineage, origin, paths, methods and limits, on one line."""
        return self._handle.describe()

    def request(
        self, method: str, path: str, headers: Optional[Headers] = None, body: Body = None
    ) -> Response:
        """Send `method path` (path and query, starting with `/`) relative to this authority.

        Raises `Denied` when the host refuses (the same reason is in its audit log) or the
        exchange fails (`timeout`, `connect_failed`...). Any HTTP status is a `Response`.
        """
        req = _types.Request(
            method=method,
            path_and_query=path,
            headers=_header_list(headers),
            body=_bytes(body),
        )
        r = _call(self._handle.fetch, req)
        return Response(
            status=r.status,
            headers=[(k, bytes(v).decode("latin-1")) for k, v in r.headers],
            body=bytes(r.body),
        )

    def get(self, path: str, headers: Optional[Headers] = None) -> Response:
        """`GET path`; see `request`."""
        return self.request("GET", path, headers=headers)

    def post(self, path: str, body: Body = None, headers: Optional[Headers] = None) -> Response:
        """`POST path` with `body`; see `request`."""
        return self.request("POST", path, headers=headers, body=body)

    def put(self, path: str, body: Body = None, headers: Optional[Headers] = None) -> Response:
        """`PUT path` with `body`; see `request`."""
        return self.request("PUT", path, headers=headers, body=body)

    def delete(self, path: str, headers: Optional[Headers] = None) -> Response:
        """`DELETE path`; see `request`."""
        return self.request("DELETE", path, headers=headers)

    def derive(
        self,
        *,
        host: Optional[str] = None,
        paths: Optional[Sequence[str]] = None,
        methods: Optional[Sequence[str]] = None,
        max_requests: Optional[int] = None,
        rate: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        max_request_body: Optional[int] = None,
        max_response_body: Optional[int] = None,
        expires_in_ms: Optional[int] = None,
    ) -> "Authority":
        """A new authority allowing a subset of this one; what is not given is kept.

        `host` narrows a wildcard origin to one host, `paths` are whole-segment prefixes under
        this authority's, `rate` is "N/UNIT" ("10/s"), sizes are bytes. Its requests also count
        against this authority's budget and rate, and revoking this one revokes it.
        Raises `Denied` with `attenuation_widens` if it would allow anything this one does not,
        or `invalid_attenuation` if a value is malformed.
        """
        att = _types.Attenuation(
            host=host,
            paths=None if paths is None else list(paths),
            methods=None if methods is None else list(methods),
            max_requests=max_requests,
            rate=rate,
            timeout_ms=timeout_ms,
            max_request_body=max_request_body,
            max_response_body=max_response_body,
            expires_in_ms=expires_in_ms,
        )
        return Authority(_call(self._handle.derive, att), self.name)

    def revoke(self) -> None:
        """Revoke this authority and everything derived from it, now and later: their next
        requests are refused with `revoked`."""
        self._handle.revoke()


_preopened: Optional[Dict[str, Authority]] = None


def authorities() -> Dict[str, Authority]:
    """Every authority the host preopened for this guest, by name."""
    global _preopened
    if _preopened is None:
        _preopened = {name: Authority(h, name) for h, name in _preopens.get_authorities()}
    return dict(_preopened)


def authority(name: str) -> Authority:
    """The preopened authority called `name`; `KeyError` if the host gave none by that name."""
    found = authorities()
    if name not in found:
        raise KeyError(f"no authority named {name!r} was preopened (have: {sorted(found)})")
    return found[name]


@dataclass
class ExitStatus:
    """How a nested sandbox ended."""

    code: int
    """0 success, 1 failure, 124 time limit, 134 trap or memory limit."""
    message: Optional[str] = None
    """Why the host stopped the child, if it did."""
    stdout: bytes = b""
    """What the child wrote to stdout (at most 1 MiB)."""
    stderr: bytes = b""
    """What the child wrote to stderr (at most 1 MiB)."""


def run_sandbox(
    component: bytes, preopens: Mapping[str, Authority], args: Sequence[str]
) -> ExitStatus:
    """Run `component` (a wasi:cli command component) in a nested sandbox that sees only
    `preopens`, under those names.

    Each becomes a fresh child of the authority you pass, so revoking yours revokes the
    child's and its requests count against your budgets. `args` is the child's argv, program
    name first. Its memory and time are at most what this sandbox has left. Raises `Denied`
    (`invalid_component`, `nesting_limit`...) if the host will not start it.
    """
    handles = [(a._handle, name) for name, a in preopens.items()]
    status = _call(_sandbox.run, bytes(component), handles, list(args))
    return ExitStatus(
        code=status.code,
        message=status.message,
        stdout=bytes(status.stdout),
        stderr=bytes(status.stderr),
    )
