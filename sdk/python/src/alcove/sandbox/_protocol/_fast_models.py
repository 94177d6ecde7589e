"""Building :class:`OutputEvent` models without validation, for wire data already checked.

``OutputEvent.model_validate`` costs microseconds per line, more than decoding the stream. For
data checked beforehand (exactly ``line``: str, ``timestamp``: int, ``stream``: str), the model
it would make is known: its ``__dict__`` holds the three fields (the timestamp as a datetime),
all three are "set", there is no extra field and no private state. :class:`OutputEventFactory`
fills those four slots of ``pydantic.BaseModel`` directly, which is what ``model_construct``
does, minus its per-call bookkeeping. The factory checks at first use that what it builds equals
what ``model_validate`` makes; with a pydantic whose models are laid out otherwise, it is not used
and every event is validated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from ..models import OutputEvent, _timestamp_before

_FIELDS = frozenset(("line", "timestamp", "stream"))
_SAMPLE = {"line": "a \u00e9 \U0001f600", "timestamp": 1767225600123, "stream": "stderr"}

_Slot = Callable[[Any, Any], None]


class OutputEventFactory:
    """Makes OutputEvent models from checked wire dicts (see the module's docstring)."""

    _shared: OutputEventFactory | None = None
    _checked = False

    def __init__(self) -> None:
        slots = vars(BaseModel)
        set_dict: _Slot = slots["__dict__"].__set__
        set_fields: _Slot = slots["__pydantic_fields_set__"].__set__
        set_extra: _Slot = slots["__pydantic_extra__"].__set__
        set_private: _Slot = slots["__pydantic_private__"].__set__
        new = object.__new__

        def one(event: dict[str, Any], timestamp: datetime) -> OutputEvent:
            event["timestamp"] = timestamp
            model: OutputEvent = new(OutputEvent)
            set_dict(model, event)  # the wire dict becomes the model's: built by json, owned by no one else
            set_fields(model, set(_FIELDS))
            set_extra(model, {})
            set_private(model, None)
            return model

        self._one = one

    @classmethod
    def get(cls) -> OutputEventFactory | None:
        """The factory, or None when this pydantic's models are not laid out as expected."""
        if not cls._checked:
            cls._checked = True
            try:
                factory = cls()
                if factory._matches_validation():
                    cls._shared = factory
            except Exception:  # noqa: BLE001 - any surprise means: validate instead
                cls._shared = None
        return cls._shared

    def build(self, events: list[dict[str, Any]], timestamps: list[datetime]) -> Iterator[OutputEvent]:
        """The models of ``events`` (checked wire dicts, which become the models' own), with
        ``timestamps`` as their datetimes; built as they are iterated."""
        return map(self._one, events, timestamps)

    def _matches_validation(self) -> bool:
        if OutputEvent.__private_attributes__ or OutputEvent.__pydantic_post_init__ is not None:
            return False
        expected = OutputEvent.model_validate(_SAMPLE)
        timestamp = _timestamp_before(_SAMPLE["timestamp"])
        (built,) = self.build([dict(_SAMPLE)], [timestamp])
        return (
            built == expected
            and repr(built) == repr(expected)
            and built.model_dump() == expected.model_dump()
            and built.model_fields_set == expected.model_fields_set
            and built.model_extra == expected.model_extra
            and built.__pydantic_private__ == expected.__pydantic_private__
        )
