/**
 * Every public method and property of the Python SDK's classes has its camelCase counterpart
 * on the TypeScript classes. The Python names are read from the Python sources at test time.
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { Desktop, PtySession, Sandbox, SandboxClient, Tunnel } from "../../src/index.js";

const PYTHON_SDK = new URL("../../../../python/src/alcove/sandbox/", import.meta.url);

/** Public `def name(` members (methods and properties) of one class of a Python file. */
function pythonPublicNames(file: string, className: string): string[] {
  const source = readFileSync(new URL(file, PYTHON_SDK), "utf8");
  const start = source.search(new RegExp(`^class ${className}\\b`, "m"));
  assert.ok(start >= 0, `class ${className} not found in ${file}`);
  const rest = source.slice(start + 1);
  const next = rest.search(/^class /m);
  const body = next < 0 ? rest : rest.slice(0, next);
  const names = [...body.matchAll(/^ {4}(?:async )?def ([a-z][a-z0-9_]*)\(/gm)].map((match) => match[1]!);
  return [...new Set(names)].sort();
}

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
}

/** Names reachable on instances of `cls`: prototype methods and getters, up the chain. */
function tsMembers(cls: Function): Set<string> {
  const names = new Set<string>();
  for (let proto = cls.prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) names.add(name);
  }
  return names;
}

/** (file, class, TS class, least names expected, base classes defined in other files). */
const PAIRS: [string, string, Function, number, [string, string][]][] = [
  ["client.py", "SandboxClient", SandboxClient, 15, []],
  ["sandbox.py", "Sandbox", Sandbox, 25, []],
  ["pty.py", "PtySession", PtySession, 12, []],
  ["tunnel.py", "Tunnel", Tunnel, 7, [["_tunnel_base.py", "TunnelBase"]]],
];

describe("parity with the Python SDK", () => {
  for (const [file, className, cls, atLeast, bases] of PAIRS) {
    it(`${cls.name} has every public member of ${file}'s ${className}`, () => {
      const inherited = bases.flatMap(([baseFile, baseClass]) => pythonPublicNames(baseFile, baseClass));
      const python = [...new Set([...pythonPublicNames(file, className), ...inherited])].sort();
      assert.ok(python.length >= atLeast, `read only ${python.length} names from ${file}: ${python.join(", ")}`);
      const members = tsMembers(cls);
      const missing = python.filter((name) => !members.has(camel(name)));
      assert.deepEqual(missing, [], `${cls.name} lacks: ${missing.map(camel).join(", ")}`);
    });
  }

  // The desktop handle of the official tensorlake SDK (tensorlake/sandbox/desktop.py), which
  // Alcove's Python SDK mirrors.
  const DESKTOP_NAMES = [
    "width", "height", "close", "screenshot", "move_mouse", "mouse_press", "mouse_release", "click", "double_click",
    "left_click", "middle_click", "right_click", "scroll", "scroll_up", "scroll_down", "key_down", "key_up", "press",
    "type_text",
  ];

  it("Desktop has every member of the official SDK's Desktop, and of desktop.py's when there is one", (t) => {
    const members = tsMembers(Desktop);
    const missing = DESKTOP_NAMES.filter((name) => !members.has(camel(name)));
    assert.deepEqual(missing, [], `Desktop lacks: ${missing.map(camel).join(", ")}`);
    if (!existsSync(new URL("desktop.py", PYTHON_SDK))) {
      t.diagnostic("the Python SDK has no desktop.py: checked against the official SDK's names only");
      return;
    }
    const python = pythonPublicNames("desktop.py", "Desktop");
    const fromPython = python.filter((name) => !members.has(camel(name)));
    assert.deepEqual(fromPython, [], `Desktop lacks: ${fromPython.map(camel).join(", ")}`);
  });

  it("spells the documented SandboxInfo fields in camelCase", () => {
    const expected = {
      SandboxInfo: ["sandboxId", "name", "namespace", "status", "image", "resources", "secretNames", "timeoutSecs",
        "exposedPorts", "allowUnauthenticatedAccess", "entrypoint", "createdAt", "terminatedAt"],
    };
    // Checked against a decoded object, so a renamed field fails here.
    return import("../../src/models.js").then(({ sandboxInfoFromWire }) => {
      const info = sandboxInfoFromWire({ id: "x", status: "running" });
      for (const field of expected.SandboxInfo) assert.ok(field in info, field);
    });
  });
});
