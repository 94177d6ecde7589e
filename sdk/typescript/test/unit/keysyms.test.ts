import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { KEY_NAMES } from "../../src/index.js";
import { keysymForChar, keysymForKey } from "../../src/keysyms.js";

describe("keysyms", () => {
  it("maps key names and their aliases, case-insensitively", () => {
    const expected: [string[], number][] = [
      [["ctrl", "control", "Ctrl", "CONTROL"], 0xffe3],
      [["alt", "ALT"], 0xffe9],
      [["shift"], 0xffe1],
      [["super", "meta", "win", "cmd", "Cmd"], 0xffeb],
      [["enter", "return", "Return"], 0xff0d],
      [["tab"], 0xff09],
      [["esc", "escape", "Escape"], 0xff1b],
      [["backspace", "BackSpace"], 0xff08],
      [["delete", "del"], 0xffff],
      [["insert"], 0xff63],
      [["home"], 0xff50],
      [["end"], 0xff57],
      [["pageup", "page_up", "PageUp"], 0xff55],
      [["pagedown", "page_down"], 0xff56],
      [["left"], 0xff51],
      [["up"], 0xff52],
      [["right"], 0xff53],
      [["down"], 0xff54],
      [["space"], 0x20],
      [["capslock", "CapsLock"], 0xffe5],
      [["f1", "F1"], 0xffbe],
      [["f5"], 0xffc2],
      [["F12"], 0xffc9],
    ];
    for (const [names, keysym] of expected) {
      for (const name of names) assert.equal(keysymForKey(name), keysym, name);
    }
    assert.ok(KEY_NAMES.includes("page_down") && KEY_NAMES.includes("f12"));
  });

  it("maps single characters by code point, keeping their case", () => {
    assert.equal(keysymForKey("a"), 0x61);
    assert.equal(keysymForKey("A"), 0x41);
    assert.equal(keysymForKey("/"), 0x2f);
    assert.equal(keysymForKey(" "), 0x20);
    assert.equal(keysymForKey("é"), 0xe9);
    assert.equal(keysymForKey("€"), 0x010020ac);
    assert.equal(keysymForKey("😀"), 0x0101f600); // one code point, two UTF-16 units
  });

  it("types Latin-1 by code point, other characters as Unicode keysyms, and control keys", () => {
    assert.equal(keysymForChar("~"), 0x7e);
    assert.equal(keysymForChar("\u00a0"), 0xa0);
    assert.equal(keysymForChar("ÿ"), 0xff);
    assert.equal(keysymForChar("Ā"), 0x01000100);
    assert.equal(keysymForChar("ж"), 0x01000436);
    assert.equal(keysymForChar("中"), 0x01004e2d);
    assert.equal(keysymForChar("\n"), 0xff0d);
    assert.equal(keysymForChar("\t"), 0xff09);
    assert.equal(keysymForChar("\b"), 0xff08);
    assert.throws(() => keysymForChar("\x01"), /control character U\+0001/);
    assert.throws(() => keysymForChar("ab"), TypeError);
  });

  it("refuses unknown names, listing the accepted ones", () => {
    assert.throws(
      () => keysymForKey("hyper"),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message.includes('"hyper"') &&
        error.message.includes("ctrl") &&
        error.message.includes("page_down") &&
        error.message.includes("f12") &&
        error.message.includes("single character"),
    );
    assert.throws(() => keysymForKey("constructor"), RangeError);
    assert.throws(() => keysymForKey(""), TypeError);
    assert.throws(() => keysymForKey(5 as unknown as string), TypeError);
  });
});
