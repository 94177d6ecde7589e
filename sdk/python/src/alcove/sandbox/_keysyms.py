"""X keysyms for the desktop's keyboard: key names (``"ctrl"``, ``"enter"``, ``"f5"``) and characters.

RFB key events carry X11 keysyms (``<X11/keysymdef.h>``), whatever the server's platform. Named
keys come from :data:`KEY_NAMES` (matched case-insensitively); a single character is a key too.
Characters map as X does: Latin-1 printable characters are their own keysym (``"a"`` is
``0x61``, ``"é"`` is ``0xe9``), any other character is a Unicode keysym, ``0x01000000 + code
point``, which X servers resolve (x11vnc with ``-add_keysyms`` binds one to a spare keycode).
"""

from __future__ import annotations

from collections.abc import Sequence

UNICODE_KEYSYM_BASE = 0x01000000

XK_BACKSPACE = 0xFF08
XK_TAB = 0xFF09
XK_RETURN = 0xFF0D
XK_ESCAPE = 0xFF1B
XK_DELETE = 0xFFFF
XK_HOME = 0xFF50
XK_LEFT = 0xFF51
XK_UP = 0xFF52
XK_RIGHT = 0xFF53
XK_DOWN = 0xFF54
XK_PAGE_UP = 0xFF55
XK_PAGE_DOWN = 0xFF56
XK_END = 0xFF57
XK_INSERT = 0xFF63
XK_F1 = 0xFFBE
XK_SHIFT_L = 0xFFE1
XK_CONTROL_L = 0xFFE3
XK_CAPS_LOCK = 0xFFE5
XK_ALT_L = 0xFFE9
XK_SUPER_L = 0xFFEB

KEY_NAMES: dict[str, int] = {
    "ctrl": XK_CONTROL_L,
    "control": XK_CONTROL_L,
    "alt": XK_ALT_L,
    "shift": XK_SHIFT_L,
    # One key for the "logo" modifier, whatever the keyboard calls it.
    "super": XK_SUPER_L,
    "meta": XK_SUPER_L,
    "win": XK_SUPER_L,
    "cmd": XK_SUPER_L,
    "enter": XK_RETURN,
    "return": XK_RETURN,
    "tab": XK_TAB,
    "esc": XK_ESCAPE,
    "escape": XK_ESCAPE,
    "backspace": XK_BACKSPACE,
    "delete": XK_DELETE,
    "del": XK_DELETE,
    "insert": XK_INSERT,
    "home": XK_HOME,
    "end": XK_END,
    "pageup": XK_PAGE_UP,
    "page_up": XK_PAGE_UP,
    "pagedown": XK_PAGE_DOWN,
    "page_down": XK_PAGE_DOWN,
    "up": XK_UP,
    "down": XK_DOWN,
    "left": XK_LEFT,
    "right": XK_RIGHT,
    "space": 0x20,
    "capslock": XK_CAPS_LOCK,
    "caps_lock": XK_CAPS_LOCK,
    **{f"f{number}": XK_F1 + number - 1 for number in range(1, 13)},
}
"""Named keys (lowercase) and their keysyms."""

# Control characters that type_text turns into keys; any other one is refused.
_TYPED_CONTROLS = {"\n": XK_RETURN, "\r": XK_RETURN, "\t": XK_TAB}


def char_keysym(char: str) -> int:
    """The keysym that types ``char``: its code point for printable Latin-1, else a Unicode keysym."""
    if len(char) != 1:
        raise ValueError(f"expected one character, got {char!r}")
    code = ord(char)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    if code < 0x20 or 0x7F <= code < 0xA0:
        raise ValueError(f"U+{code:04X} is a control character: it has no key to type")
    if 0xD800 <= code <= 0xDFFF:
        raise ValueError(f"U+{code:04X} is a lone surrogate, not a character")
    return UNICODE_KEYSYM_BASE + code


def key_keysym(key: str) -> int:
    """The keysym of a key given by name (case-insensitive, see :data:`KEY_NAMES`) or as one character."""
    if not isinstance(key, str):
        raise ValueError(f"a key is a string (a name such as 'ctrl' or one character), got {key!r}")
    if not key:
        raise ValueError("a key name cannot be empty")
    named = KEY_NAMES.get(key.lower())
    if named is not None:
        return named
    if len(key) == 1:
        try:
            return char_keysym(key)
        except ValueError:
            pass
    raise ValueError(f"unknown key {key!r}: use one character or one of {', '.join(sorted(KEY_NAMES))}")


def chord_keysyms(keys: str | Sequence[str]) -> list[int]:
    """The keysyms of a key or a chord (``["ctrl", "c"]``), in the order they are pressed."""
    names = [keys] if isinstance(keys, str) else keys
    if isinstance(names, (bytes, bytearray)) or not isinstance(names, Sequence):
        raise ValueError(f"press takes a key name or a list of key names, got {keys!r}")
    if not names:
        raise ValueError("press needs at least one key")
    return [key_keysym(name) for name in names]


def text_keysyms(text: str) -> list[int]:
    """The keysyms that type ``text``, one per character (a line break → Return, tab → Tab).

    Checked whole before anything is typed: a control character raises ``ValueError``.
    """
    if not isinstance(text, str):
        raise ValueError(f"type_text takes a str, got {type(text).__name__}")
    keysyms = []
    for index, char in enumerate(text):
        if char == "\n" and index and text[index - 1] == "\r":
            continue  # "\r\n" is one line break, so one Return
        control = _TYPED_CONTROLS.get(char)
        if control is not None:
            keysyms.append(control)
            continue
        try:
            keysyms.append(char_keysym(char))
        except ValueError as exc:
            raise ValueError(f"cannot type character {index} of the text: {exc}") from None
    return keysyms
