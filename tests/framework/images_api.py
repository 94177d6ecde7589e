"""Raw HTTP helpers of the image routes (docs/api.md, "Images"), for the e2e tests.

A reference in a path (`GET /images/{ref}`) is percent-encoded whole (`/` and `:` too), so
that `127.0.0.1:5000/repo/name:tag` is one path segment.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import httpx

from framework.host import wait_for
from framework.server import AlcoveServer

NAMESPACE_PREFIX = "/v1/namespaces/default"
LAYER_STATUSES = {"waiting", "exists", "downloading", "verifying", "unpacking", "done"}


def image_path(ref: str, prefix: str = "") -> str:
    return f"{prefix}/images/{quote(ref, safe='')}"


@dataclass
class Event:
    name: str
    data: dict[str, Any]


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Events of a `text/event-stream`: `event:` names it (else the data's `event` field)."""
    name, data = "", []
    for line in lines:
        if line == "":
            if data:
                payload = json.loads("\n".join(data))
                yield Event(name or payload.get("event", "message"), payload)
            name, data = "", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        payload = json.loads("\n".join(data))
        yield Event(name or payload.get("event", "message"), payload)


def _headers(server: AlcoveServer, sse: bool) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"} if sse else {}
    if server.api_keys:
        headers["Authorization"] = f"Bearer {server.api_keys[0]}"
    return headers


def stream_events(server: AlcoveServer, method: str, path: str, timeout: float = 600,
                  headers: dict[str, str] | None = None,
                  **kwargs: Any) -> tuple[int, list[Event]]:
    """(status, events) of a route followed as an event stream; a non-2xx answer gives its
    JSON body as one `error` event."""
    with httpx.stream(method, f"{server.url}{path}", headers=_headers(server, True) | (headers or {}),
                      timeout=timeout, **kwargs) as resp:
        if not resp.is_success:
            resp.read()
            try:
                body = resp.json()
            except ValueError:
                body = {"message": resp.text}
            return resp.status_code, [Event("error", body)]
        assert resp.headers["content-type"].startswith("text/event-stream"), resp.headers
        return resp.status_code, list(parse_sse(resp.iter_lines()))


def pull(server: AlcoveServer, reference: str, timeout: float = 600, **fields: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/images/pull", json={"reference": reference, **fields},
                      headers=_headers(server, False), timeout=timeout)


def pull_ok(server: AlcoveServer, reference: str, **fields: Any) -> dict[str, Any]:
    resp = pull(server, reference, **fields)
    assert resp.status_code in (200, 201), (resp.status_code, resp.text)
    return resp.json()


def pull_events(server: AlcoveServer, reference: str, **fields: Any) -> tuple[int, list[Event]]:
    return stream_events(server, "POST", "/images/pull", json={"reference": reference, **fields})


def get_image(server: AlcoveServer, ref: str, prefix: str = "") -> httpx.Response:
    return server.api("GET", image_path(ref, prefix))


def list_images(server: AlcoveServer, prefix: str = "") -> list[dict[str, Any]]:
    resp = server.api("GET", f"{prefix}/images")
    assert resp.status_code == 200, resp.text
    return resp.json()["images"]


def all_names(server: AlcoveServer) -> set[str]:
    return {n for image in list_images(server) for n in image["names"]}


def delete_image(server: AlcoveServer, ref: str) -> httpx.Response:
    return server.api("DELETE", image_path(ref))


def import_archive(server: AlcoveServer, archive: Path, name: str) -> httpx.Response:
    return httpx.post(f"{server.url}/images/import", params={"name": name},
                      content=archive.read_bytes(), headers=_headers(server, False)
                      | {"Content-Type": "application/x-tar"}, timeout=600)


def context_tar(files: dict[str, bytes | str]) -> bytes:
    """A build context: a tar of the given files (a `Dockerfile` among them)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(server: AlcoveServer, context: bytes, name: str, sse: bool = False,
          **params: Any) -> httpx.Response | tuple[int, list[Event]]:
    """POST /images/build; params such as build_arg may be lists (repeated parameters)."""
    query: list[tuple[str, str]] = [("name", name)]
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            query.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    headers = {"Content-Type": "application/x-tar"}
    if sse:
        return stream_events(server, "POST", "/images/build", params=query, content=context,
                             headers=headers)
    return httpx.post(f"{server.url}/images/build", params=query, content=context,
                      headers=_headers(server, False) | headers, timeout=600)


def create_raw(server: AlcoveServer, body: dict[str, Any], timeout: float = 300) -> str:
    """POST /sandboxes with `body` as given; waits until the sandbox runs. Returns its id."""
    resp = httpx.post(f"{server.url}/sandboxes", headers=_headers(server, False),
                      json={"resources": {"cpus": 1.0, "memory_mb": 1024}, **body},
                      timeout=timeout)
    assert resp.status_code in (200, 201, 202), (resp.status_code, resp.text)
    answer = resp.json()
    sandbox_id = str(answer.get("sandbox_id") or answer.get("id"))
    status: dict[str, str] = {}

    def running() -> bool:
        status["s"] = server.api("GET", f"/sandboxes/{sandbox_id}").json()["status"]
        assert status["s"] not in ("failed", "terminated"), f"sandbox {sandbox_id} {status}"
        return status["s"] == "running"

    assert wait_for(running, timeout), f"sandbox {sandbox_id} still {status}"
    return sandbox_id


def error_code(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("code", ""))
    except ValueError:
        return ""
