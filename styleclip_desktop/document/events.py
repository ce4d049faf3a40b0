"""Plain-Python change notification for the document model.

The GUI observes the document instead of being told about changes by whoever made them,
so the CLI, scripts and undo all update the screen the same way. This is a small
napari-style evented model: named emitters grouped on an object, callbacks receiving an
`Event`, and models whose chosen fields emit `changed` when assigned. No Qt here: the
widgets connect plain callables and marshal to the UI thread themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

log = logging.getLogger(__name__)

Callback = Callable[["Event"], None]


class Event:
    """One notification: its type, the object that changed, and details as attributes."""

    __slots__ = ("type", "source", "info")

    def __init__(self, type: str, source: object, info: Mapping[str, Any]) -> None:
        self.type = type
        self.source = source
        self.info = dict(info)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.info[name]
        except KeyError:
            raise AttributeError(f"{self.type} event has no {name!r}") from None

    def __repr__(self) -> str:
        details = ", ".join(f"{k}={v!r}" for k, v in self.info.items())
        return f"Event({self.type!r}, {details})"


class EventEmitter:
    """Calls every connected callback, in connection order, with each emitted event."""

    def __init__(self, source: object, type: str) -> None:
        self.source = source
        self.type = type
        self._callbacks: list[Callback] = []
        self._blocked = 0

    def connect(self, callback: Callback) -> Callback:
        """Connect `callback`; returns it, so this works as a decorator."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callback | None = None) -> None:
        """Disconnect one callback, or all of them when none is named."""
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    @property
    def callbacks(self) -> tuple[Callback, ...]:
        return tuple(self._callbacks)

    @contextmanager
    def blocked(self) -> Iterator[None]:
        """Emit nothing inside this block (for bulk loads that announce themselves once)."""
        self._blocked += 1
        try:
            yield
        finally:
            self._blocked -= 1

    def emit(self, **info: Any) -> Event:
        event = Event(self.type, self.source, info)
        if self._blocked:
            return event
        for callback in tuple(self._callbacks):
            # A broken view must not leave the model half-changed or the undo history
            # out of step with it, so an observer's error is logged, not propagated.
            try:
                callback(event)
            except Exception:
                log.exception("observer %r failed on %r", callback, event)
        return event


class EmitterGroup:
    """Named emitters of one object, plus `connect` for a callback that hears them all."""

    def __init__(self, source: object, *names: str) -> None:
        self._source = source
        self._emitters: dict[str, EventEmitter] = {}
        self._all = EventEmitter(source, "*")
        for name in names:
            self.add(name)

    def add(self, name: str) -> EventEmitter:
        if name in self._emitters:
            return self._emitters[name]
        emitter = _GroupMember(self._source, name, self._all)
        self._emitters[name] = emitter
        return emitter

    def __getattr__(self, name: str) -> EventEmitter:
        try:
            return self.__dict__["_emitters"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(f"no event named {name!r}") from None

    def __getitem__(self, name: str) -> EventEmitter:
        return self._emitters[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._emitters)

    def connect(self, callback: Callback) -> Callback:
        """Connect `callback` to every event of the group, present and future."""
        return self._all.connect(callback)

    def disconnect(self, callback: Callback | None = None) -> None:
        self._all.disconnect(callback)

    @contextmanager
    def blocked(self) -> Iterator[None]:
        with self._all.blocked():
            for emitter in self._emitters.values():
                emitter._blocked += 1
            try:
                yield
            finally:
                for emitter in self._emitters.values():
                    emitter._blocked -= 1


class _GroupMember(EventEmitter):
    def __init__(self, source: object, type: str, catch_all: EventEmitter) -> None:
        super().__init__(source, type)
        self._catch_all = catch_all

    def emit(self, **info: Any) -> Event:
        event = super().emit(**info)
        if not self._blocked:
            self._catch_all.emit(event=event)
        return event


def values_equal(a: object, b: object) -> bool:
    """Equality that also works for numpy arrays and containers of them."""
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(values_equal, a, b))
    return bool(a == b)


class EventedModel:
    """Base for objects whose listed fields emit `events.changed(field, old, new)`.

    Assignment goes through `set`, so `layer.alpha = 2.0`, a command and a loader all
    validate and notify the same way. Subclasses list their fields in `_validators`
    (a field name -> a function that returns the normalised value or raises
    ValueError/TypeError) and may refuse a change in `_check_change`.
    """

    _validators: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    events: EmitterGroup

    def _init_fields(self, **values: Any) -> None:
        object.__setattr__(self, "events", EmitterGroup(self, "changed"))
        for name, value in values.items():
            object.__setattr__(self, name, self._validators[name](value))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._validators:
            self.set(name, value)
        else:
            object.__setattr__(self, name, value)

    def set(self, name: str, value: Any, *, force: bool = False) -> bool:
        """Validate and assign one field; True when it changed. `force` skips the
        refusal check (undo must always be able to put back what was there)."""
        if name not in self._validators:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        value = self._validators[name](value)
        old = getattr(self, name)
        if values_equal(old, value):
            return False
        if not force:
            self._check_change(name, value)
        object.__setattr__(self, name, value)
        self.events.changed.emit(field=name, old=old, new=value)
        return True

    def _check_change(self, name: str, value: Any) -> None:
        """Raise to refuse a change (e.g. on a locked layer)."""
