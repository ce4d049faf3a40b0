"""A plain undo stack for the command objects in `commands`.

It behaves like Qt's QUndoStack (push executes, merges by `id()`/`merge_with`, a clean
index marks the saved state), so tests and the CLI exercise the same commands the GUI
will push onto a QUndoStack.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from styleclip_desktop.document.commands import Command, MacroCommand
from styleclip_desktop.document.events import EmitterGroup


class UndoStack:
    """Executed commands, a current index, and the index at which the document was saved.

    Events: `index_changed(index)` after push/undo/redo/clear, `clean_changed(clean)`.
    `limit` > 0 keeps only that many steps (the oldest are forgotten).
    """

    def __init__(self, limit: int = 0) -> None:
        if limit < 0:
            raise ValueError("the undo limit must be >= 0")
        self.limit = limit
        self.events = EmitterGroup(self, "index_changed", "clean_changed")
        self._commands: list[Command] = []
        self._index = 0
        self._clean_index: int | None = 0
        self._macros: list[MacroCommand] = []

    # -- state -------------------------------------------------------------------------

    @property
    def index(self) -> int:
        """How many commands are currently applied."""
        return self._index

    @property
    def count(self) -> int:
        return len(self._commands)

    def command(self, index: int) -> Command:
        return self._commands[index]

    def texts(self) -> list[str]:
        """The history panel's entries, oldest first."""
        return [c.text for c in self._commands]

    def can_undo(self) -> bool:
        return self._index > 0 and not self._macros

    def can_redo(self) -> bool:
        return self._index < len(self._commands) and not self._macros

    def undo_text(self) -> str:
        return self._commands[self._index - 1].text if self._index > 0 else ""

    def redo_text(self) -> str:
        return self._commands[self._index].text if self._index < len(self._commands) else ""

    def is_clean(self) -> bool:
        return self._index == self._clean_index

    @property
    def clean_index(self) -> int | None:
        """The index at which the document was saved; None once that state is unreachable."""
        return self._clean_index

    def set_clean(self) -> None:
        """Mark the current state as the saved one."""
        self._set_clean_index(self._index)

    # -- changing ----------------------------------------------------------------------

    def push(self, command: Command) -> None:
        """Execute `command` and record it. If it raises, nothing is recorded."""
        command.do()
        if self._macros:
            if command.is_obsolete():
                command.undo()
            else:
                self._macros[-1].commands.append(command)
            return
        self._record(command)

    def _record(self, command: Command) -> None:
        was_clean = self.is_clean()
        self._drop_redo_tail()
        top = self._commands[-1] if self._commands else None
        if (
            top is not None
            and command.id() != -1
            and top.id() == command.id()
            and self._index != self._clean_index  # keep the saved state reachable
            and top.merge_with(command)
        ):
            if top.is_obsolete():
                # A drag that ended where it began: no step at all.
                top.undo()
                self._commands.pop()
                self._index -= 1
            self.events.index_changed.emit(index=self._index)
        elif command.is_obsolete():
            command.undo()
        else:
            self._commands.append(command)
            self._index += 1
            self._apply_limit()
            self.events.index_changed.emit(index=self._index)
        self._emit_clean(was_clean)

    def undo(self) -> None:
        if not self.can_undo():
            return
        was_clean = self.is_clean()
        self._commands[self._index - 1].undo()
        self._index -= 1
        self.events.index_changed.emit(index=self._index)
        self._emit_clean(was_clean)

    def redo(self) -> None:
        if not self.can_redo():
            return
        was_clean = self.is_clean()
        self._commands[self._index].do()
        self._index += 1
        self.events.index_changed.emit(index=self._index)
        self._emit_clean(was_clean)

    def undo_all(self) -> None:
        while self.can_undo():
            self.undo()

    def redo_all(self) -> None:
        while self.can_redo():
            self.redo()

    def clear(self) -> None:
        """Forget all history (the document stays as it is), e.g. after opening a project."""
        was_clean = self.is_clean()
        self._commands.clear()
        self._index = 0
        self._clean_index = 0
        self.events.index_changed.emit(index=0)
        self._emit_clean(was_clean)

    @contextmanager
    def macro(self, text: str) -> Iterator[MacroCommand]:
        """Group everything pushed inside the block into one undo step. If the block
        raises, what it did is undone and nothing is recorded."""
        macro = MacroCommand(text, [])
        self._macros.append(macro)
        try:
            yield macro
        except BaseException:
            self._macros.pop()
            macro.undo()
            raise
        self._macros.pop()
        if not macro.commands:
            return
        if self._macros:
            self._macros[-1].commands.append(macro)
        else:
            self._record(macro)

    # -- internals ---------------------------------------------------------------------

    def _drop_redo_tail(self) -> None:
        if self._index < len(self._commands):
            del self._commands[self._index:]
            if self._clean_index is not None and self._clean_index > self._index:
                self._clean_index = None

    def _apply_limit(self) -> None:
        if self.limit and len(self._commands) > self.limit:
            drop = len(self._commands) - self.limit
            del self._commands[:drop]
            self._index -= drop
            if self._clean_index is not None:
                self._clean_index = self._clean_index - drop if self._clean_index >= drop else None

    def _set_clean_index(self, index: int | None) -> None:
        was_clean = self.is_clean()
        self._clean_index = index
        self._emit_clean(was_clean)

    def _emit_clean(self, was_clean: bool) -> None:
        if self.is_clean() != was_clean:
            self.events.clean_changed.emit(clean=self.is_clean())
