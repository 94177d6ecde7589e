"""The OpenAPI document of a real `alcove serve`: valid OpenAPI 3.1, byte for byte the committed
docs/protocol/openapi.json, served without an API key; and the answers of a real server and
sandbox have the statuses the document lists for their routes, with bodies its schemas admit
(the events of server-sent-event streams included)."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from framework.server import REPO, AlcoveServer

COMMITTED = REPO / "docs" / "protocol" / "openapi.json"
REGENERATE = "cargo run -q -p alcove-server --example openapi > docs/protocol/openapi.json"


@pytest.fixture(scope="module")
def served(server) -> httpx.Response:
    return httpx.get(f"{server.url}/openapi.json", timeout=30)


@pytest.fixture(scope="module")
def doc(served: httpx.Response) -> dict[str, Any]:
    return served.json()


def test_the_served_document_is_valid_openapi_3_1(served: httpx.Response, doc: dict[str, Any]) -> None:
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_the_served_document_is_the_committed_file(served: httpx.Response) -> None:
    assert served.text == COMMITTED.read_text(), (
        f"{COMMITTED.relative_to(REPO)} differs from what the server serves; regenerate it with: {REGENERATE}"
    )


def test_the_document_needs_no_api_key(doc: dict[str, Any]) -> None:
    srv = AlcoveServer(api_keys=["contract-key"])
    srv.start()
    try:
        assert httpx.get(f"{srv.url}/openapi.json", timeout=30).text == COMMITTED.read_text()
        contract = Contract(doc, srv.url)
        contract.call("GET", "/sandboxes", expect=401, auth=False)
        contract.call("GET", "/healthz", expect=200, auth=False)
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Answers against the document


class Contract:
    """Sends requests and checks each answer against the operation the document gives its route."""

    def __init__(self, doc: dict[str, Any], url: str, sandbox: str | None = None) -> None:
        self.doc = doc
        self.url = url
        self.sandbox = sandbox
        self.seen: set[tuple[str, str, int]] = set()

    def _resolve(self, obj: dict[str, Any]) -> dict[str, Any]:
        ref = obj.get("$ref")
        if not ref:
            return obj
        node: Any = self.doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return self._resolve(node)

    def validate(self, value: Any, schema: dict[str, Any], where: str) -> None:
        # The document is the root resource, so `#/components/...` references resolve in it.
        validator = Draft202012Validator({**schema, "components": self.doc["components"]})
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        assert not errors, f"{where}: {value!r} does not fit its schema: {errors[0].message}"

    def call(
        self,
        method: str,
        template: str,
        *,
        expect: int | None = None,
        auth: bool = True,
        path: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = self.url + template.format_map(path or {})
        headers = kwargs.pop("headers", {})
        if template.startswith("/api/v1/") and self.sandbox:
            headers.setdefault("X-Tensorlake-Sandbox-Id", self.sandbox)
        resp = httpx.request(method, url, headers=headers, timeout=60, **kwargs)
        where = f"{method} {template} -> {resp.status_code}"
        if expect is not None:
            assert resp.status_code == expect, f"{where}: {resp.text[:500]}"
        self.check(resp, method, template, where)
        return resp

    def check(self, resp: httpx.Response, method: str, template: str, where: str) -> None:
        operation = self.doc["paths"][template][method.lower()]
        responses = operation["responses"]
        status = str(resp.status_code)
        assert status in responses, f"{where}: the document lists only {sorted(responses)}"
        response = self._resolve(responses[status])
        assert "x-request-id" in resp.headers, f"{where}: no x-request-id"
        content = response.get("content", {})
        media = resp.headers.get("content-type", "").split(";")[0].strip()
        if not content:
            assert not resp.content, f"{where}: a body the document does not describe: {resp.text[:200]}"
            return
        assert media in content, f"{where}: {media!r} is not among {sorted(content)}"
        described = content[media]
        if media == "application/json" and "schema" in described:
            self.validate(resp.json(), described["schema"], where)
        elif media == "text/event-stream":
            self.check_events(resp.text, described["x-sse-events"], where)
        self.seen.add((method, template, resp.status_code))

    def check_events(self, text: str, events: dict[str, Any], where: str) -> list[tuple[str, Any]]:
        parsed = parse_events(text)
        assert parsed, f"{where}: no events"
        for name, data in parsed:
            assert name in events, f"{where}: event {name!r} is not among {sorted(events)}"
            self.validate(data, events[name], f"{where} event {name}")
        return parsed


def parse_events(text: str) -> list[tuple[str, Any]]:
    """The (name, data) of each event of an SSE body; comments (keep-alives) are skipped."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "data" in fields:
            out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


def test_answers_fit_the_document(server, doc: dict[str, Any]) -> None:
    c = Contract(doc, server.url)
    c.call("GET", "/healthz", expect=200)
    c.call("GET", "/sandbox-pools", expect=200)
    c.call("GET", "/v1/namespaces/{ns}/archived-sandboxes", path={"ns": "default"}, expect=200)
    c.call("GET", "/archived-sandboxes", params={"limit": "0"}, expect=400)
    c.call("GET", "/archived-sandboxes/{id}", path={"id": "no-such-sandbox"}, expect=404)
    c.call("POST", "/sandboxes", content=b"[]", headers={"Content-Type": "application/json"}, expect=400)
    c.call("GET", "/sandboxes/{id}", path={"id": "no-such-sandbox"}, expect=404)
    c.call("GET", "/snapshots", expect=200)
    c.call("GET", "/snapshots/{sid}", path={"sid": "no-such-snapshot"}, expect=404)
    c.call("PUT", "/secrets/{name}", path={"name": "CONTRACT_SECRET"}, json={"value": "v"}, expect=200)
    c.call("GET", "/secrets", expect=200)
    c.call("DELETE", "/secrets/{name}", path={"name": "CONTRACT_SECRET"}, expect=204)
    c.call("DELETE", "/secrets/{name}", path={"name": "CONTRACT_SECRET"}, expect=404)
    c.call("GET", "/api/v1/health", expect=400)
    c.call("GET", "/api/v1/health", headers={"X-Tensorlake-Sandbox-Id": "no-such-sandbox"}, expect=404)

    created = c.call("POST", "/v1/namespaces/{ns}/sandboxes", path={"ns": "default"}, json={}, expect=200)
    sid = created.json()["sandbox_id"]
    try:
        sandbox_answers(c, sid)
        in_sandbox_answers(Contract(doc, server.url, sandbox=sid))
    finally:
        c.call("DELETE", "/sandboxes/{id}", path={"id": sid}, expect=200)
    c.call("GET", "/v1/namespaces/{ns}/sandboxes/{id}", path={"ns": "default", "id": sid}, expect=200)
    c.call("GET", "/archived-sandboxes/{id}", path={"id": sid}, expect=200)
    c.call("GET", "/v1/namespaces/{ns}/archived-sandboxes", path={"ns": "default"}, params={"limit": "1"}, expect=200)
    ns_id = {"ns": "default", "id": sid}
    logs = c.call("GET", "/v1/namespaces/{ns}/sandboxes/{id}/logs", path=ns_id, params={"tail": "5"}, expect=200)
    assert logs.json()["logs"], "an ended sandbox's logs are still readable"
    c.call("GET", "/v1/namespaces/{ns}/sandboxes/{id}/logs", path=ns_id, params={"head": "1", "tail": "1"}, expect=400)
    c.call("GET", "/sandboxes/{id}/logs", path={"id": "no-such-sandbox"}, expect=404)
    c.call("GET", "/v1/namespaces/{ns}/sandboxes/{id}/processes", path=ns_id, expect=200)


def sandbox_answers(c: Contract, sid: str) -> None:
    ident = {"id": sid}
    c.call("GET", "/sandboxes/{id}", path=ident, expect=200)
    c.call("GET", "/v1/namespaces/{ns}/sandboxes", path={"ns": "default"}, expect=200)
    c.call("PATCH", "/sandboxes/{id}", path=ident, json={"exposed_ports": [8080]}, expect=200)
    c.call("PATCH", "/sandboxes/{id}", path=ident, json={"resources": {"memory_mb": 2048}}, expect=200)
    c.call("POST", "/sandboxes/{id}/suspend", path=ident, expect=400)  # ephemeral
    c.call("GET", "/sandboxes/{id}/snapshots", path=ident, expect=200)
    c.call("POST", "/sandboxes/{id}/copy", path=ident, params={"times": "0"}, expect=400)
    copied = c.call("POST", "/sandboxes/{id}/copy", path=ident, params={"times": "1"}, expect=200)
    for made in copied.json()["sandboxes"]:
        c.call("DELETE", "/sandboxes/{id}", path={"id": made["sandbox_id"]}, expect=200)


def in_sandbox_answers(c: Contract) -> None:
    c.call("GET", "/api/v1/health", expect=200)
    c.call("GET", "/api/v1/info", expect=200)

    run = {"command": "sh", "args": ["-c", "echo out; echo err >&2; exit 3"]}
    resp = c.call("POST", "/api/v1/processes/run", json=run, expect=200)
    names = [name for name, _ in parse_events(resp.text)]
    assert names[0] == "started" and names[-1] == "exit" and names.count("output") == 2, names
    c.call("POST", "/api/v1/processes/run", json={"command": "no-such-command"}, expect=400)

    started = c.call("POST", "/api/v1/processes", json={"command": "cat", "stdin_mode": "pipe"}, expect=201)
    pid = {"p": started.json()["pid"]}
    c.call("POST", "/api/v1/processes/{p}/stdin", path=pid, content=b"hello\n", expect=204)
    c.call("POST", "/api/v1/processes/{p}/stdin/close", path=pid, expect=204)
    c.call("POST", "/api/v1/processes/{p}/stdin/close", path=pid, expect=400)
    deadline = time.monotonic() + 30
    while c.call("GET", "/api/v1/processes/{p}", path=pid, expect=200).json()["status"] == "running":
        assert time.monotonic() < deadline, "cat did not exit after its stdin closed"
        time.sleep(0.1)
    c.call("GET", "/api/v1/processes", expect=200)
    for stream in ("stdout", "stderr", "output"):
        c.call("GET", f"/api/v1/processes/{{p}}/{stream}", path=pid, expect=200)
    resp = c.call("GET", "/api/v1/processes/{p}/output/follow", path=pid, expect=200)
    assert [name for name, _ in parse_events(resp.text)] == ["output", "eof"]
    c.call("POST", "/api/v1/processes/{p}/signal", path=pid, json={"signal": 15}, expect=409)
    c.call("POST", "/api/v1/processes/{p}/restart", path=pid, expect=409)  # not managed
    c.call("DELETE", "/api/v1/processes/{p}", path=pid, expect=204)
    c.call("GET", "/api/v1/processes/{p}", path={"p": 999999}, expect=404)
    managed = {"command": "sleep", "args": ["60"], "name": "contract", "restart": {"policy": "always"}}
    first = c.call("POST", "/api/v1/processes", json=managed, expect=201).json()
    assert first["managed"]["status"] == "running", first
    again = c.call("POST", "/api/v1/processes/{p}/restart", path={"p": "contract"}, expect=200).json()
    assert again["pid"] != first["pid"] and again["managed"]["restart_count"] == 1, again
    c.call("POST", "/api/v1/processes", json={**managed, "health_check": {"type": "tcp", "port": 0}}, expect=400)
    c.call("DELETE", "/api/v1/processes/{p}", path={"p": "contract"}, expect=204)
    with httpx.stream("GET", f"{c.url}/api/v1/journal", params={"after": "0"},
                      headers={"X-Tensorlake-Sandbox-Id": c.sandbox}, timeout=60) as journal:
        assert journal.status_code == 200
        assert journal.headers["content-type"].startswith("text/event-stream")
        first_event = next(journal.iter_lines())
        assert first_event == "event: journal", first_event
    c.call("GET", "/api/v1/journal", params={"after": "x"}, expect=400)

    file = {"params": {"path": "/tmp/contract.txt"}}
    c.call("PUT", "/api/v1/files", content=b"contract", expect=204, **file)
    assert c.call("GET", "/api/v1/files", expect=200, **file).content == b"contract"
    c.call("GET", "/api/v1/files/list", params={"path": "/tmp"}, expect=200)
    c.call("DELETE", "/api/v1/files", expect=204, **file)
    c.call("GET", "/api/v1/files", expect=404, **file)
    c.call("GET", "/api/v1/files", params={"path": "relative"}, expect=400)

    pty = c.call("POST", "/api/v1/pty", json={"command": "sh", "rows": 30, "cols": 100}, expect=201)
    session = {"id": pty.json()["session_id"]}
    c.call("GET", "/api/v1/pty", expect=200)
    c.call("GET", "/api/v1/pty/{id}", path=session, expect=200)
    c.call("POST", "/api/v1/pty/{id}/resize", path=session, json={"rows": 40, "cols": 120}, expect=200)
    c.call("GET", "/api/v1/pty/{id}/ws", path=session, expect=403)  # no token
    c.call("DELETE", "/api/v1/pty/{id}", path=session, expect=204)
    c.call("GET", "/api/v1/pty/{id}", path=session, expect=404)

    c.call("GET", "/api/v1/tunnels/tcp", params={"port": "0"}, expect=400)
