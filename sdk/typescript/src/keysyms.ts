/**
 * X keysyms (X11 `keysymdef.h`) of key names and characters, for RFB KeyEvents (RFC 6143, 7.5.4).
 */

/** Named keys, by lower-case name (aliases included). */
const NAMED: Readonly<Record<string, number>> = Object.freeze({
  ctrl: 0xffe3, // Control_L
  control: 0xffe3,
  alt: 0xffe9, // Alt_L
  shift: 0xffe1, // Shift_L
  super: 0xffeb, // Super_L
  meta: 0xffeb,
  win: 0xffeb,
  cmd: 0xffeb,
  enter: 0xff0d, // Return
  return: 0xff0d,
  tab: 0xff09,
  esc: 0xff1b, // Escape
  escape: 0xff1b,
  backspace: 0xff08, // BackSpace
  delete: 0xffff, // Delete
  del: 0xffff,
  insert: 0xff63,
  home: 0xff50,
  end: 0xff57,
  pageup: 0xff55, // Prior
  page_up: 0xff55,
  pagedown: 0xff56, // Next
  page_down: 0xff56,
  left: 0xff51,
  up: 0xff52,
  right: 0xff53,
  down: 0xff54,
  space: 0x0020,
  capslock: 0xffe5, // Caps_Lock
  ...Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`f${i + 1}`, 0xffbe + i])), // F1..F12
});

/** Control characters that have a key of their own. */
const CONTROL_CHARS: Readonly<Record<string, number>> = Object.freeze({
  "\n": 0xff0d, // Return
  "\r": 0xff0d,
  "\t": 0xff09, // Tab
  "\b": 0xff08, // BackSpace
  "\x1b": 0xff1b, // Escape
  "\x7f": 0xffff, // Delete
});

/** Every key name {@link keysymForKey} accepts, besides single characters. */
export const KEY_NAMES: readonly string[] = Object.freeze(Object.keys(NAMED));

/**
 * The keysym that types one character (one Unicode code point): printable Latin-1 characters use
 * their code point, newline/tab/backspace/escape/delete their keys, anything else the Unicode
 * keysym `0x01000000 + code point`.
 */
export function keysymForChar(char: string): number {
  if (Object.hasOwn(CONTROL_CHARS, char)) return CONTROL_CHARS[char]!;
  const codePoint = char.codePointAt(0);
  if (codePoint === undefined || String.fromCodePoint(codePoint) !== char) {
    throw new TypeError(`expected a single character, got ${JSON.stringify(char)}`);
  }
  if ((codePoint >= 0x20 && codePoint <= 0x7e) || (codePoint >= 0xa0 && codePoint <= 0xff)) return codePoint;
  if (codePoint < 0x20 || (codePoint >= 0x7f && codePoint < 0xa0)) {
    throw new RangeError(`no key types the control character U+${codePoint.toString(16).toUpperCase().padStart(4, "0")}`);
  }
  return 0x01000000 + codePoint;
}

/**
 * The keysym of a key: a name of {@link KEY_NAMES} (case-insensitive, e.g. `"ctrl"`, `"Enter"`,
 * `"F5"`) or a single character (`"a"`, `"A"`, `"é"`, `"/"`).
 */
export function keysymForKey(key: string): number {
  if (typeof key !== "string" || key.length === 0) {
    throw new TypeError(`a key must be a non-empty string, got ${JSON.stringify(key)}`);
  }
  const lower = key.toLowerCase();
  if (Object.hasOwn(NAMED, lower)) return NAMED[lower]!;
  if ([...key].length === 1) return keysymForChar(key);
  throw new RangeError(
    `unknown key ${JSON.stringify(key)}: use a single character or one of ${KEY_NAMES.join(", ")} (case-insensitive)`,
  );
}

/** Shift_L, the keysym of `"shift"`. */
export const SHIFT_KEYSYM = 0xffe1;

/**
 * The keysym a letter key gives with Shift held: its upper case (`a` → `A`, `é` → `É`); any
 * other keysym as is. VNC servers type the keysym they receive, releasing Shift behind the scenes
 * for a lower-case letter, so a chord such as shift+a must send the upper-case letter.
 */
export function shiftedKeysym(keysym: number): number {
  let codePoint: number;
  if ((keysym >= 0x61 && keysym <= 0x7a) || (keysym >= 0xe0 && keysym <= 0xfe && keysym !== 0xf7)) codePoint = keysym;
  else if (keysym >= 0x01000100 && keysym <= 0x0110ffff) codePoint = keysym - 0x01000000;
  else return keysym;
  const upper = String.fromCodePoint(codePoint).toUpperCase();
  const upperPoint = upper.codePointAt(0)!;
  if (upper.length !== String.fromCodePoint(upperPoint).length || upperPoint === codePoint) return keysym;
  return keysymForChar(upper);
}
