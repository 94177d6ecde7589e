import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { resolveConfig } from "../../src/config.js";
import { SandboxNotRoutableError } from "../../src/errors.js";
import { proxyTarget, sandboxesUrl, snapshotsUrl, withQuery } from "../../src/http.js";
import { ptyWebsocketUrl, selfRoutingBase, tunnelWebsocketUrl, websocketHeaders } from "../../src/websocket.js";

const config = resolveConfig({ apiUrl: "http://localhost:8900/", namespace: "team-a" }, {});

describe("control-plane URLs", () => {
  it("nest routes under the namespace and encode segments", () => {
    assert.equal(sandboxesUrl(config), "http://localhost:8900/v1/namespaces/team-a/sandboxes");
    assert.equal(sandboxesUrl(config, "my env", "/suspend"), "http://localhost:8900/v1/namespaces/team-a/sandboxes/my%20env/suspend");
    assert.equal(snapshotsUrl(config, "s/1"), "http://localhost:8900/v1/namespaces/team-a/snapshots/s%2F1");
  });

  it("form-encode queries (a space travels as +)", () => {
    assert.equal(withQuery("http://h/api/v1/files", { path: "/tmp/a b/ü.txt" }), "http://h/api/v1/files?path=%2Ftmp%2Fa+b%2F%C3%BC.txt");
    assert.equal(withQuery("http://h/x?a=1", { b: "2" }), "http://h/x?a=1&b=2");
    assert.equal(withQuery("http://h/x", {}), "http://h/x");
  });
});

describe("proxy addressing", () => {
  it("routes by the self-routing path, keeping a path prefix", () => {
    const target = proxyTarget("http://localhost:9443/prefix/", "sbx-1");
    assert.equal(target.baseUrl, "http://localhost:9443/prefix/sandboxes/sbx-1");
    assert.deepEqual(target.headers, {});
    assert.equal(proxyTarget("http://127.0.0.1:8900", "a b").baseUrl, "http://127.0.0.1:8900/sandboxes/a%20b");
  });

  it("does so for any host (never a Host override), dropping credentials, passing the route hint", () => {
    const target = proxyTarget("https://user:pw@proxy.example:8443/alcove", "sbx-1", "hint-7");
    assert.equal(target.baseUrl, "https://proxy.example:8443/alcove/sandboxes/sbx-1");
    assert.deepEqual(target.headers, { "X-Tensorlake-Route-Hint": "hint-7" });
  });

  it("refuses an unusable sandbox_url", () => {
    assert.throws(() => proxyTarget("", "sbx"), SandboxNotRoutableError);
    assert.throws(() => proxyTarget("ftp://host", "sbx"), SandboxNotRoutableError);
  });
});

describe("WebSocket URLs", () => {
  it("keep the path prefix for a PTY and put the token in the query", () => {
    assert.equal(
      ptyWebsocketUrl("http://localhost:9443/prefix/", "sbx-1", "pty 1", "t&k"),
      "ws://localhost:9443/prefix/sandboxes/sbx-1/api/v1/pty/pty%201/ws?token=t%26k",
    );
    assert.equal(selfRoutingBase("https://proxy.example", "sbx-1"), "wss://proxy.example/sandboxes/sbx-1");
  });

  it("replace the whole path for a tunnel", () => {
    assert.equal(
      tunnelWebsocketUrl("http://localhost:9443/prefix", "sbx-1", 8080),
      "ws://localhost:9443/sandboxes/sbx-1/api/v1/tunnels/tcp?port=8080",
    );
    assert.throws(() => tunnelWebsocketUrl("http://localhost:9443", "sbx-1", 70000), RangeError);
  });

  it("carry the API key, the route hint and the PTY token, never a Host override", () => {
    const keyed = resolveConfig({ apiUrl: "http://localhost:8900", apiKey: "k" }, {});
    const headers = websocketHeaders(keyed, proxyTarget("http://proxy.example", "sbx", "h"), "tok");
    assert.equal(headers.Authorization, "Bearer k");
    assert.equal(headers["X-Tensorlake-Route-Hint"], "h");
    assert.equal(headers["X-PTY-Token"], "tok");
    assert.equal(headers.Host, undefined);
    assert.match(headers["User-Agent"] ?? "", /^alcove-typescript-sdk\//);
  });
});
