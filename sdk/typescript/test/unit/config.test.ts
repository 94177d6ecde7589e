import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { SandboxClient, VERSION } from "../../src/index.js";
import { resolveConfig } from "../../src/config.js";

describe("configuration", () => {
  it("defaults to localhost:8900, no key, namespace default, 300 s, streams idle 120 s", () => {
    assert.deepEqual(resolveConfig({}, {}), {
      apiUrl: "http://localhost:8900",
      apiKey: undefined,
      namespace: "default",
      timeoutSecs: 300,
      streamIdleTimeoutSecs: 120,
    });
  });

  it("reads ALCOVE_API_URL and ALCOVE_API_KEY", () => {
    const config = resolveConfig({}, { ALCOVE_API_URL: " http://10.0.0.5:9000/ ", ALCOVE_API_KEY: "k1" });
    assert.equal(config.apiUrl, "http://10.0.0.5:9000");
    assert.equal(config.apiKey, "k1");
  });

  it("lets options win over the environment", () => {
    const config = resolveConfig(
      { apiUrl: "https://alcove.example:8443", apiKey: "k2", namespace: "team", timeoutSecs: 20, streamIdleTimeoutSecs: 30 },
      { ALCOVE_API_URL: "http://other:1", ALCOVE_API_KEY: "k1" },
    );
    assert.deepEqual(config, {
      apiUrl: "https://alcove.example:8443",
      apiKey: "k2",
      namespace: "team",
      timeoutSecs: 20,
      streamIdleTimeoutSecs: 30,
    });
  });

  it("ignores empty variables", () => {
    const config = resolveConfig({}, { ALCOVE_API_URL: "  ", ALCOVE_API_KEY: "" });
    assert.equal(config.apiUrl, "http://localhost:8900");
    assert.equal(config.apiKey, undefined);
  });

  it("rejects bad settings before anything is sent", () => {
    assert.throws(() => resolveConfig({ apiUrl: "localhost:8900" }, {}), TypeError);
    assert.throws(() => resolveConfig({ namespace: "a/b" }, {}), TypeError);
    assert.throws(() => resolveConfig({ namespace: ".." }, {}), TypeError);
    assert.throws(() => resolveConfig({ namespace: "a b" }, {}), TypeError);
    assert.throws(() => resolveConfig({ timeoutSecs: 0 }, {}), RangeError);
  });

  it("reads the environment when a client is built, not at import", () => {
    const saved = { url: process.env.ALCOVE_API_URL, key: process.env.ALCOVE_API_KEY };
    try {
      process.env.ALCOVE_API_URL = "http://127.0.0.1:1234";
      assert.equal(new SandboxClient().apiUrl, "http://127.0.0.1:1234");
      process.env.ALCOVE_API_URL = "http://127.0.0.1:5678";
      assert.equal(new SandboxClient().apiUrl, "http://127.0.0.1:5678");
      assert.equal(new SandboxClient({ apiUrl: "http://localhost:1" }).apiUrl, "http://localhost:1");
      assert.equal(new SandboxClient({ namespace: "ns" }).namespace, "ns");
    } finally {
      for (const [name, value] of [["ALCOVE_API_URL", saved.url], ["ALCOVE_API_KEY", saved.key]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it("reports the version of package.json", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
    assert.equal(VERSION, pkg.version);
  });
});
