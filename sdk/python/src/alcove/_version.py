"""The version of the alcove package (kept apart so submodules can import it without cycles)."""

__version__ = "0.1.0"
