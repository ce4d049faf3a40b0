"""Undoable commands: every change a user makes to a document is one of these.

The shape follows Qt's QUndoCommand so the GUI can wrap these objects in a QUndoStack
unchanged, while `undo.UndoStack` serves tests and the CLI:

- `do()` applies the change (the first time and on redo), `undo()` reverts it;
- `text` names the step in the history panel;
- `id()` and `merge_with(other)` fold a run of changes into one step. Only commands that
  carry the same `merge_key` (e.g. one slider drag) merge, so two separate drags on the
  same slider stay two steps;
- `is_obsolete()` is true for a command that changes nothing; stacks drop it.

A command's first `do()` checks the change (locked layers refuse, values are validated)
before touching anything, so a refused command leaves the document as it was. `undo()`
and redo never refuse: they restore exactly a state the document has already been in,
lock or not.

The functions in `actions` (`add_layer`, `set_alpha`, ...) build these for the GUI and
CLI; a small number of generic classes here do the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from styleclip_desktop.document.document import Document
from styleclip_desktop.document.events import EventedModel, values_equal
from styleclip_desktop.document.layers import Layer
from styleclip_desktop.document.timeline import Keyframe, normalise_track


class Command:
    """Base of every undoable step."""

    text: str = ""

    def do(self) -> None:
        raise NotImplementedError

    def undo(self) -> None:
        raise NotImplementedError

    def id(self) -> int:
        """Commands with the same id (not -1) are offered to each other's merge_with."""
        return -1

    def merge_with(self, other: Command) -> bool:
        """Absorb `other` (already done) into this command; True when merged."""
        return False

    def is_obsolete(self) -> bool:
        return False


class DocumentCommand(Command):
    """A command on one document; keeps the document's revision token in step with undo,
    so undoing back to the saved state makes the document clean again."""

    def __init__(self, doc: Document, text: str) -> None:
        self.doc = doc
        self.text = text
        self._rev_before: int | None = None
        self._rev_after: int | None = None

    def do(self) -> None:
        if self._rev_after is None:
            before = self.doc.revision
            self._apply(first=True)
            self._rev_before, self._rev_after = before, self.doc.revision
        else:
            self._apply(first=False)
            self.doc.restore_revision(self._rev_after)

    def undo(self) -> None:
        self._revert()
        assert self._rev_before is not None, "undo of a command that was never done"
        self.doc.restore_revision(self._rev_before)

    def _apply(self, first: bool) -> None:
        raise NotImplementedError

    def _revert(self) -> None:
        raise NotImplementedError


class MacroCommand(Command):
    """Several commands as one step (e.g. a morph keyframing every layer)."""

    def __init__(self, text: str, commands: Sequence[Command]) -> None:
        self.text = text
        self.commands = list(commands)

    def do(self) -> None:
        done: list[Command] = []
        try:
            for command in self.commands:
                command.do()
                done.append(command)
        except BaseException:
            for command in reversed(done):
                command.undo()
            raise

    def undo(self) -> None:
        for command in reversed(self.commands):
            command.undo()

    def is_obsolete(self) -> bool:
        return all(c.is_obsolete() for c in self.commands)


_UNSET: Any = object()


class SetAttr(DocumentCommand):
    """Set one evented field of one object in the document: the generic command behind
    rename, alpha, visibility, lock, parameters, timeline settings and document fields."""

    MERGE_ID = 1

    def __init__(self, doc: Document, attr: str, value: Any, text: str, merge_key: object = None) -> None:
        super().__init__(doc, text)
        self.attr = attr
        self.new = value
        self.old: Any = _UNSET
        self.merge_key = merge_key

    def target(self) -> EventedModel:
        raise NotImplementedError

    def target_key(self) -> object:
        """What identifies the target object, for merging."""
        return None

    def _apply(self, first: bool) -> None:
        obj = self.target()
        if first:
            self.old = getattr(obj, self.attr)
        obj.set(self.attr, self.new, force=not first)

    def _revert(self) -> None:
        self.target().set(self.attr, self.old, force=True)

    def id(self) -> int:
        return -1 if self.merge_key is None else self.MERGE_ID

    def merge_with(self, other: Command) -> bool:
        if (
            type(other) is not type(self)
            or not isinstance(other, SetAttr)
            or self.merge_key is None
            or other.merge_key != self.merge_key
            or other.doc is not self.doc
            or other.target_key() != self.target_key()
            or other.attr != self.attr
            or other._rev_after is None
        ):
            return False
        self.new = other.new
        self._rev_after = other._rev_after
        return True

    def is_obsolete(self) -> bool:
        return self.old is not _UNSET and values_equal(self.old, self.new)


class SetLayerAttr(SetAttr):
    MERGE_ID = 2

    def __init__(self, doc: Document, layer_id: str, attr: str, value: Any, text: str, merge_key: object = None):
        super().__init__(doc, attr, value, text, merge_key)
        self.layer_id = layer_id

    def target(self) -> EventedModel:
        return self.doc.layers.get(self.layer_id)

    def target_key(self) -> object:
        return self.layer_id


class SetDocumentAttr(SetAttr):
    MERGE_ID = 3

    def target(self) -> EventedModel:
        return self.doc


class SetTimelineAttr(SetAttr):
    MERGE_ID = 4

    def target(self) -> EventedModel:
        return self.doc.timeline


class SetTrack(DocumentCommand):
    """Replace one layer's keyframes (the command behind every keyframe edit)."""

    MERGE_ID = 5

    def __init__(self, doc: Document, layer_id: str, keys: Sequence[Keyframe], text: str, merge_key: object = None):
        super().__init__(doc, text)
        self.layer_id = layer_id
        self.new = normalise_track(keys)
        self.old: tuple[Keyframe, ...] | None = None
        self.merge_key = merge_key

    def _apply(self, first: bool) -> None:
        if not first:
            self.doc.timeline.set_track(self.layer_id, self.new, force=True)
            return
        self.doc.layers.get(self.layer_id)  # an unknown layer is a KeyError, before any change
        self.old = self.doc.timeline.set_track(self.layer_id, self.new)

    def _revert(self) -> None:
        assert self.old is not None
        self.doc.timeline.set_track(self.layer_id, self.old, force=True)

    def id(self) -> int:
        return -1 if self.merge_key is None else self.MERGE_ID

    def merge_with(self, other: Command) -> bool:
        if (
            not isinstance(other, SetTrack)
            or self.merge_key is None
            or other.merge_key != self.merge_key
            or other.doc is not self.doc
            or other.layer_id != self.layer_id
            or other._rev_after is None
        ):
            return False
        self.new = other.new
        self._rev_after = other._rev_after
        return True

    def is_obsolete(self) -> bool:
        return self.old is not None and self.old == self.new


class AddLayer(DocumentCommand):
    """Insert a layer (with optional keyframes); redo re-inserts the same layer object."""

    def __init__(self, doc: Document, layer: Layer, index: int | None, text: str,
                 keys: Sequence[Keyframe] = ()) -> None:
        super().__init__(doc, text)
        self.layer = layer
        self.index = index
        self.keys = normalise_track(keys)

    def _apply(self, first: bool) -> None:
        index = len(self.doc.layers) if self.index is None else self.index
        self.doc.layers.insert(index, self.layer)
        self.doc.timeline.set_track(self.layer.id, self.keys, force=True)

    def _revert(self) -> None:
        self.doc.timeline.set_track(self.layer.id, (), force=True)
        self.doc.layers.remove(self.layer.id, force=True)


class RemoveLayer(DocumentCommand):
    def __init__(self, doc: Document, layer_id: str, text: str) -> None:
        super().__init__(doc, text)
        self.layer_id = layer_id
        self.index = -1
        self.layer: Layer | None = None
        self.keys: tuple[Keyframe, ...] = ()

    def _apply(self, first: bool) -> None:
        keys = self.doc.timeline.keyframes(self.layer_id)
        self.index, self.layer = self.doc.layers.remove(self.layer_id, force=not first)
        self.keys = keys
        self.doc.timeline.set_track(self.layer_id, (), force=True)

    def _revert(self) -> None:
        assert self.layer is not None
        self.doc.layers.insert(self.index, self.layer)
        self.doc.timeline.set_track(self.layer_id, self.keys, force=True)


class MoveLayer(DocumentCommand):
    def __init__(self, doc: Document, layer_id: str, index: int, text: str) -> None:
        super().__init__(doc, text)
        self.layer_id = layer_id
        self.index = index
        self.old_index: int | None = None

    def _apply(self, first: bool) -> None:
        self.old_index = self.doc.layers.move(self.layer_id, self.index)

    def _revert(self) -> None:
        assert self.old_index is not None
        self.doc.layers.move(self.layer_id, self.old_index)

    def is_obsolete(self) -> bool:
        return self.old_index is not None and self.doc.layers.index_of(self.layer_id) == self.old_index
