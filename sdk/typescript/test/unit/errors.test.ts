import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  AuthenticationError,
  RemoteAPIError,
  SandboxConnectionError,
  SandboxError,
  SandboxException,
  SandboxFailedError,
  SandboxNameConflictError,
  SandboxNotFoundError,
  SandboxNotRoutableError,
  SandboxResizeError,
  SandboxTimeoutError,
  SnapshotNotFoundError,
} from "../../src/index.js";
import { errorFromResponse, parseErrorBody, proxyError } from "../../src/http.js";

describe("error hierarchy", () => {
  it("roots every error at SandboxException and names each class", () => {
    const errors: [Error, string, Function][] = [
      [new SandboxError("x"), "SandboxError", SandboxException],
      [new SandboxNotFoundError("sbx1"), "SandboxNotFoundError", SandboxError],
      [new RemoteAPIError(500, "boom"), "RemoteAPIError", SandboxError],
      [new SandboxNameConflictError(409, "taken"), "SandboxNameConflictError", RemoteAPIError],
      [new SnapshotNotFoundError(404, "gone"), "SnapshotNotFoundError", RemoteAPIError],
      [new AuthenticationError(401, "no"), "AuthenticationError", RemoteAPIError],
      [new SandboxConnectionError("refused"), "SandboxConnectionError", SandboxError],
      [new SandboxTimeoutError("slow"), "SandboxTimeoutError", SandboxError],
      [new SandboxFailedError("sbx1", "failed", "oom", "sandbox sbx1 failed"), "SandboxFailedError", SandboxError],
      [new SandboxNotRoutableError("no url"), "SandboxNotRoutableError", SandboxError],
      [new SandboxResizeError("sbx1", 2, "failed", "no room"), "SandboxResizeError", SandboxError],
    ];
    for (const [error, name, parent] of errors) {
      assert.equal(error.name, name);
      assert.ok(error instanceof parent, name);
      assert.ok(error instanceof SandboxException, name);
      assert.ok(error instanceof Error, name);
      assert.ok(String(error).startsWith(`${name}: `), String(error));
    }
  });

  it("keeps the fields of API errors", () => {
    const error = new RemoteAPIError(503, "not ready", "SANDBOX_NOT_READY", "req-1");
    assert.equal(error.statusCode, 503);
    assert.equal(error.code, "SANDBOX_NOT_READY");
    assert.equal(error.serverMessage, "not ready");
    assert.equal(error.requestId, "req-1");
    assert.equal(error.message, "API error (status 503, SANDBOX_NOT_READY): not ready (request req-1)");
    const named = new RemoteAPIError(500, "suspend failed: busy (request req-2)", "OPERATION_FAILED", "req-2");
    assert.equal(named.message, "API error (status 500, OPERATION_FAILED): suspend failed: busy (request req-2)");
    const missing = new SandboxNotFoundError("sbx1");
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.sandboxId, "sbx1");
    assert.equal(missing.message, "sandbox 'sbx1' not found");
    assert.equal(new SandboxNotFoundError("sbx1", "no such thing").message, "sandbox 'sbx1': no such thing");
  });
});

describe("error answers", () => {
  it("reads control-plane, agent and plain-text bodies", () => {
    assert.deepEqual(parseErrorBody(400, '{"message": "bad name", "code": "INVALID_ARGUMENT"}'), {
      message: "bad name",
      code: "INVALID_ARGUMENT",
      requestId: undefined,
    });
    assert.deepEqual(parseErrorBody(404, '{"error": "no such file", "code": "NOT_FOUND"}'), {
      message: "no such file",
      code: "NOT_FOUND",
      requestId: undefined,
    });
    assert.equal(parseErrorBody(500, '{"message": "internal error", "request_id": "r9"}').requestId, "r9");
    assert.equal(parseErrorBody(502, "upstream down\n").message, "upstream down");
    assert.equal(parseErrorBody(502, "").message, "HTTP 502");
    assert.equal(parseErrorBody(400, '{"error": {"message": "nested"}}').message, "nested");
  });

  it("rewrites the answer of a failed sandbox", () => {
    const body = JSON.stringify({ sandbox_id: "sbx1", status: "failed", termination_reason: "oom", error_details: { exit: 137 } });
    assert.equal(parseErrorBody(500, body).message, 'Sandbox sbx1 failed (oom): {"exit":137}');
  });

  it("picks the class from the status and the call", () => {
    assert.ok(errorFromResponse(404, '{"message":"x"}', { sandbox: "my-env" }) instanceof SandboxNotFoundError);
    assert.equal((errorFromResponse(404, "", { sandbox: "my-env" }) as SandboxNotFoundError).sandboxId, "my-env");
    assert.ok(errorFromResponse(404, "", { snapshot: true }) instanceof SnapshotNotFoundError);
    assert.ok(errorFromResponse(409, "taken", { create: true }) instanceof SandboxNameConflictError);
    assert.ok(!(errorFromResponse(409, "busy", { sandbox: "x" }) instanceof SandboxNameConflictError));
    // A create's 409 about a volume or the snapshot's source is not about the name.
    for (const code of ["FILE_SYSTEM_IN_USE", "INVALID_STATE", "OPERATION_REFUSED"]) {
      const error = errorFromResponse(409, JSON.stringify({ message: "held", code }), { create: true });
      assert.ok(error instanceof RemoteAPIError && !(error instanceof SandboxNameConflictError), code);
      assert.equal((error as RemoteAPIError).code, code);
    }
    assert.ok(errorFromResponse(401, "") instanceof AuthenticationError);
    assert.ok(errorFromResponse(403, "") instanceof AuthenticationError);
    assert.ok(errorFromResponse(403, '{"error":"bad PTY token","code":"INVALID_TOKEN"}') instanceof AuthenticationError);
    for (const code of ["PATH_TRAVERSAL", "PERMISSION_DENIED"]) {
      // A sandbox refusing a file or a user, not the caller's credentials.
      const refusal = errorFromResponse(403, `{"error":"read-only file system: /x","code":"${code}"}`);
      assert.ok(refusal instanceof RemoteAPIError && !(refusal instanceof AuthenticationError), code);
      assert.equal((refusal as RemoteAPIError).statusCode, 403);
    }
    const other = errorFromResponse(500, '{"message":"boom","code":"INTERNAL"}');
    assert.ok(other instanceof RemoteAPIError && !(other instanceof AuthenticationError));
    assert.equal((other as RemoteAPIError).statusCode, 500);
    assert.equal((other as RemoteAPIError).code, "INTERNAL");
  });

  it("maps the proxy's SANDBOX_NOT_FOUND to SandboxNotFoundError, other 404s to RemoteAPIError", () => {
    const gone = proxyError(404, '{"message":"sandbox sbx1 is terminated","code":"SANDBOX_NOT_FOUND"}', "sbx1");
    assert.ok(gone instanceof SandboxNotFoundError);
    const missingFile = proxyError(404, '{"error":"no such file","code":"NOT_FOUND"}', "sbx1");
    assert.ok(missingFile instanceof RemoteAPIError);
    assert.equal((missingFile as RemoteAPIError).code, "NOT_FOUND");
  });
});
