import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { crc32, encodePng } from "../../src/png.js";
import { decodePng, pixel } from "./memory.js";

describe("PNG", () => {
  it("computes CRC-32 as PNG does", () => {
    assert.equal(crc32(Buffer.from("123456789")), 0xcbf43926); // the standard check value
    assert.equal(crc32(Buffer.from("IEND")), 0xae426082); // every PNG ends with it
    assert.equal(crc32(new Uint8Array(0)), 0);
    assert.equal(crc32(Buffer.from("6789"), crc32(Buffer.from("12345"))), 0xcbf43926);
  });

  it("encodes RGB pixels that decode back, with valid chunks", () => {
    const width = 37;
    const height = 5;
    const rgb = Buffer.alloc(width * height * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 7) & 0xff;
    const png = encodePng(width, height, rgb);
    const decoded = decodePng(png);
    assert.equal(decoded.width, width);
    assert.equal(decoded.height, height);
    assert.deepEqual(decoded.chunks, ["IHDR", "IDAT", "IEND"]);
    assert.ok(decoded.rgb.equals(rgb));
    assert.deepEqual(pixel(decoded, 1, 0), [21, 28, 35]);
    // The empty IEND chunk, byte for byte.
    assert.equal(Buffer.from(png.subarray(-12)).toString("hex"), "0000000049454e44ae426082");
  });

  it("refuses sizes that do not match the pixels", () => {
    assert.throws(() => encodePng(2, 2, new Uint8Array(11)), RangeError);
    assert.throws(() => encodePng(0, 2, new Uint8Array(0)), RangeError);
    assert.throws(() => encodePng(1.5, 2, new Uint8Array(9)), RangeError);
  });
});
