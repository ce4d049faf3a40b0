"""The layer commands (new, duplicate, delete, move, hide) as actions: the Layers panel's
buttons and the window's Layer menu share them, so a shortcut does the same wherever it
is pressed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QMenu, QWidget

if TYPE_CHECKING:
    from styleclip_desktop.ui.panels.layers_panel import LayersPanel

Keys = QKeySequence | QKeySequence.StandardKey


class LayerActions:
    """The commands on the current layer, owned by the Layers panel."""

    def __init__(self, panel: LayersPanel) -> None:
        self.panel = panel
        self.new = self._action("New Layer from Prompt…", QKeySequence(Qt.Key.Key_Insert), panel.focus_prompt)
        self.new.setStatusTip("Type the prompt of a new layer")
        self.duplicate = self._action("Duplicate Layer", QKeySequence("Ctrl+J"), panel.duplicate_current)
        self.delete = self._action("Delete Layer", QKeySequence.StandardKey.Delete, panel.delete_current)
        self.up = self._action("Move Layer Up", QKeySequence("Ctrl+]"), lambda: panel.move_current(+1))
        self.down = self._action("Move Layer Down", QKeySequence("Ctrl+["), lambda: panel.move_current(-1))
        self.visibility = self._action("Hide Layer", QKeySequence("Ctrl+,"), panel.toggle_current_visible)
        self._delete_key: QShortcut | None = None

    def _action(self, text: str, keys: Keys, slot: Callable[[], object]) -> QAction:
        # Scoped to the panel until `fill_menu` puts them in the window's Layer menu.
        action = QAction(text, self.panel)
        action.setShortcut(keys)
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        action.setEnabled(False)
        self.panel.addAction(action)
        return action

    def in_menu_order(self) -> list[QAction | None]:
        """None: a separator."""
        return [self.new, self.duplicate, self.delete, None, self.up, self.down, None, self.visibility]

    def fill_menu(self, menu: QMenu, window: QWidget) -> None:
        """Put the commands in `window`'s Layer menu, their shortcuts working wherever the
        focus is in the window, as in other image editors."""
        for action in self.in_menu_order():
            if action is None:
                menu.addSeparator()
                continue
            menu.addAction(action)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        # Delete also deletes what other views have selected (a keyframe in the timeline):
        # the key goes to the focused view first, and deletes the layer when that view has
        # nothing to delete. The menu item itself always deletes the layer.
        self.delete.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self._delete_key = QShortcut(self.delete.shortcut(), window)
        self._delete_key.setContext(Qt.ShortcutContext.WindowShortcut)
        self._delete_key.activated.connect(self._on_delete_key)

    def _on_delete_key(self) -> None:
        panel = self.panel
        focus = QApplication.focusWidget()
        if focus is not None and not (focus is panel or panel.isAncestorOf(focus)):
            event = QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Delete, Qt.KeyboardModifier.NoModifier)
            shortcut = self._delete_key
            assert shortcut is not None
            shortcut.setEnabled(False)  # a sent key press is offered to the shortcuts again
            try:
                QApplication.sendEvent(focus, event)
            finally:
                shortcut.setEnabled(True)
            if event.isAccepted():
                return
        panel.delete_current()

    def update(self, has_document: bool, current_visible: bool | None) -> None:
        """Enable what applies to the current layer (None: there is none)."""
        has = current_visible is not None
        for action in (self.duplicate, self.delete, self.up, self.down, self.visibility):
            action.setEnabled(has)
        if self._delete_key is not None:
            self._delete_key.setEnabled(has)
        self.visibility.setText("Show Layer" if current_visible is False else "Hide Layer")
        self.new.setEnabled(has_document)
