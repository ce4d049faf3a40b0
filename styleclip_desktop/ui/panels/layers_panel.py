"""The layer list: the stack of text edits, top of the list = top of the stack.

The panel is a view over the document's evented layer stack: it rebuilds its rows only
when layers are added, removed or reordered and otherwise updates rows in place, so a
slider being dragged is never destroyed under the mouse. Every change goes through the
editor's undo stack; a slider drag is one undo step (one merge key per drag) with cheap
previews while it moves and one full render when it is let go.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLineEdit,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.document import Document, GlobalDirectionParams, Layer, actions
from styleclip_desktop.ui.panels.editing import (
    GLOBAL_DIRECTION,
    MAPPER,
    OPTIMIZATION,
    add_prompt_layer,
    refused_by_lock,
    remember_beta,
)
from styleclip_desktop.ui.panels.engine_link import EngineLink
from styleclip_desktop.ui.panels.layer_menu import LayerActions
from styleclip_desktop.ui.panels.layer_row import ROLE_LAYER_ID, LayerList, LayerRow
from styleclip_desktop.ui.panels.optimization_run import OptimizationRunner
from styleclip_desktop.ui.panels.widgets import DocumentFollower, is_alive
from styleclip_desktop.ui.state import EditorState

BETA_PROBLEM = "β too high"  # how the engine's β messages begin (render and direction queries)


class LayersPanel(DocumentFollower, QWidget):
    def __init__(self, state: EditorState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.link = EngineLink.of(state)
        self.runner = OptimizationRunner(state, self)
        self.rows: dict[str, LayerRow] = {}
        # layer id -> (target, neutral, beta) asked about, and the answer once it came
        self._directions: dict[str, tuple[tuple[str, str, float], Any]] = {}
        self._doc: Document | None = None
        self.setWindowTitle("Layers")

        self.prompt = QLineEdit()
        self.prompt.setPlaceholderText("Add an edit: e.g. a face with grey hair")
        self.add_button = QToolButton()
        self.add_button.setText("Add")
        self.add_button.setToolTip("Add a global-direction layer (menu: mapper or optimization)")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        menu = QMenu(self.add_button)
        for label, kind in (("Global direction", GLOBAL_DIRECTION), ("Mapper (checkpoint name)", MAPPER),
                            ("Latent optimization", OPTIMIZATION)):
            menu.addAction(label, partial(self.add_from_prompt, kind))
        self.add_button.setMenu(menu)
        add_bar = QHBoxLayout()
        add_bar.addWidget(self.prompt, 1)
        add_bar.addWidget(self.add_button)

        self.list = LayerList()
        self.layer_actions = LayerActions(self)
        a = self.layer_actions
        self.new_action, self.duplicate_action, self.delete_action = a.new, a.duplicate, a.delete
        self.up_action, self.down_action, self.visibility_action = a.up, a.down, a.visibility
        buttons = QHBoxLayout()
        for action in (self.up_action, self.down_action, self.duplicate_action, self.delete_action):
            button = QToolButton()
            button.setDefaultAction(action)
            buttons.addWidget(button)
        buttons.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(add_bar)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

        self.prompt.returnPressed.connect(lambda: self.add_from_prompt(GLOBAL_DIRECTION))
        self.add_button.clicked.connect(lambda: self.add_from_prompt(GLOBAL_DIRECTION))
        self.list.move_requested.connect(self.move_to_row)
        self.list.currentItemChanged.connect(self._on_current_item)
        self.runner.started.connect(self._on_run_started)
        self.runner.progressed.connect(self._on_run_progress)
        self.runner.frame.connect(lambda lid, image: self._row_call(lid, "show_frame", image))
        self.runner.finished.connect(self._on_run_finished)
        state.document_replaced.connect(self._bind)
        state.current_layer_changed.connect(self._select)
        state.current_layer_changed.connect(lambda _id: self._update_actions())
        state.engine_changed.connect(self._on_engine)
        # Animated strengths follow the playhead.
        state.playhead_changed.connect(lambda _frame: self.sync() if is_alive(self) else None)
        self._bind(state.document)

    def fill_layer_menu(self, menu: QMenu, window: QWidget) -> None:
        """The window's Layer menu: these commands, their shortcuts window-wide."""
        self.layer_actions.fill_menu(menu, window)
        self._update_actions()

    def focus_prompt(self) -> None:
        """Where a new layer starts: the prompt field above the list."""
        dock = self.parentWidget()
        if dock is not None and dock.isHidden():
            dock.show()
        if isinstance(dock, QDockWidget):
            dock.raise_()
        self.prompt.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.prompt.selectAll()

    def toggle_current_visible(self) -> None:
        layer = self.current_layer()
        if layer is not None:
            self._on_visibility(layer.id, not layer.visible)

    def claim_error(self, message: str) -> bool:
        """β problems are shown in the layer's row (with the β that works), never in a dialog."""
        if not is_alive(self) or not message.startswith(BETA_PROBLEM):
            return False
        window = self.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage("β is too high for a layer: its row in Layers offers the largest "
                                           "usable β.", 8000)
        return True

    # -- document binding -------------------------------------------------------------

    def _bind(self, doc: Document | None) -> None:
        self.runner.cancel_all()
        self.follow(doc)

    def _on_engine(self, _engine: Any) -> None:
        self._directions.clear()
        for row in self.rows.values():
            row.direction_key = None
        self.sync()

    def layer_ids_top_down(self) -> list[str]:
        return [] if self._doc is None else list(reversed(self._doc.layers.ids()))

    def sync(self) -> None:
        """Bring the rows in line with the document."""
        doc = self._doc
        ids = self.layer_ids_top_down()
        shown = [self.list.item(i).data(ROLE_LAYER_ID) for i in range(self.list.count())]
        if ids != shown:
            self._rebuild(ids)
        if doc is not None:
            for layer in doc.layers:
                row = self.rows.get(layer.id)
                if row is not None:
                    row.update_from(layer, self.state.animated_alpha(layer.id))
                    self._query_direction(layer, row)
        if ids and self.state.current_layer_id not in ids:
            self.state.set_current_layer(ids[0])
        self._select(self.state.current_layer_id)
        self._update_actions()

    def _rebuild(self, ids: list[str]) -> None:
        doc = self._doc
        self.rows = {}
        self.list.blockSignals(True)
        self.list.clear()
        for layer_id in ids:
            assert doc is not None
            layer = doc.layers.get(layer_id)
            row = self._make_row(layer)  # the list deletes the old rows' widgets with their items
            item = QListWidgetItem()
            item.setData(ROLE_LAYER_ID, layer_id)
            item.setSizeHint(row.sizeHint())
            self.list.addItem(item)
            self.list.setItemWidget(item, row)
            self.rows[layer_id] = row
            if self.runner.running(layer_id):
                row.set_running(True, "optimizing…")
        self.list.blockSignals(False)

    def _make_row(self, layer: Layer) -> LayerRow:
        row = LayerRow(layer)
        row.visibility_toggled.connect(self._on_visibility)
        row.lock_toggled.connect(self._on_lock)
        row.renamed.connect(self._on_rename)
        row.alpha_dragged.connect(self._on_alpha_dragged)
        row.alpha_released.connect(self._on_alpha_released)
        row.alpha_edited.connect(self._on_alpha_edited)
        row.beta_edited.connect(self._on_beta_edited)
        row.run_requested.connect(self.runner.start)
        row.cancel_requested.connect(self.runner.cancel)
        row.height_changed.connect(self._fit_row)
        return row

    def _fit_row(self, layer_id: str) -> None:
        row = self.rows.get(layer_id)
        for i in range(self.list.count()):
            item = self.list.item(i)
            if row is not None and item.data(ROLE_LAYER_ID) == layer_id:
                item.setSizeHint(row.sizeHint())

    def _row_call(self, layer_id: str, method: str, *args: Any) -> None:
        row = self.rows.get(layer_id)
        if row is not None:
            getattr(row, method)(*args)

    def _select(self, layer_id: str) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ROLE_LAYER_ID) == layer_id:
                if self.list.currentItem() is not item:
                    self.list.blockSignals(True)
                    self.list.setCurrentItem(item)
                    self.list.blockSignals(False)
                return

    def _on_current_item(self, item: QListWidgetItem | None, _previous: Any) -> None:
        if item is not None:
            self.state.set_current_layer(item.data(ROLE_LAYER_ID))
        self._update_actions()

    def _update_actions(self) -> None:
        layer = self.current_layer()
        self.layer_actions.update(self._doc is not None, None if layer is None else layer.visible)

    def current_layer(self) -> Layer | None:
        doc, layer_id = self._doc, self.state.current_layer_id
        if doc is None or not layer_id or layer_id not in doc.layers:
            return None
        return doc.layers.get(layer_id)

    # -- direction feedback ------------------------------------------------------------

    def _query_direction(self, layer: Layer, row: LayerRow) -> None:
        params = layer.params
        if not isinstance(params, GlobalDirectionParams):
            return
        key = (params.target, params.neutral, params.beta)
        if row.direction_key == key:
            return
        row.direction_key = key
        known = self._directions.get(layer.id)
        if known is not None and known[0] == key:
            row.set_direction_info(known[1], params.beta)
            return
        info_fn = getattr(self.state.engine, "direction_info", None)
        if info_fn is None:
            row.set_direction_info(None, params.beta)
            return
        self._directions[layer.id] = (key, None)

        def shown(info: Any) -> None:
            if self._directions.get(layer.id, (None,))[0] != key:
                return  # β moved on while the answer was being worked out
            self._directions[layer.id] = (key, info)
            current = self.rows.get(layer.id)
            if current is not None and current.direction_key == key:
                current.set_direction_info(info, key[2])

        self.link.run_in_worker(lambda: info_fn(*key), shown, key=f"direction-info:{layer.id}",
                                on_error=lambda exc: shown(_Failed(str(exc))))

    # -- user gestures ----------------------------------------------------------------

    def add_from_prompt(self, kind: str = GLOBAL_DIRECTION) -> str | None:
        layer_id = add_prompt_layer(self.state, self.prompt.text(), kind=kind)
        if layer_id is not None:
            self.prompt.clear()
            if kind == OPTIMIZATION and self.state.engine is not None:
                self.runner.start(layer_id)
        return layer_id

    def _push(self, command: Any) -> None:
        self.state.push(command)

    def _on_visibility(self, layer_id: str, visible: bool) -> None:
        if self._doc is not None:
            self._push(actions.set_visible(self._doc, layer_id, visible))
            self.link.request_render(preview=False)

    def _on_lock(self, layer_id: str, locked: bool) -> None:
        if self._doc is not None:
            self._push(actions.set_locked(self._doc, layer_id, locked))

    def _on_rename(self, layer_id: str, name: str) -> None:
        if self._doc is not None and not refused_by_lock(self.state, layer_id, "renamed"):
            self._push(actions.rename_layer(self._doc, layer_id, name))

    def _on_alpha_dragged(self, layer_id: str, alpha: float, key: object) -> None:
        if self._doc is not None and not refused_by_lock(self.state, layer_id):
            self.state.set_current_layer(layer_id)
            self._push(actions.set_alpha(self._doc, layer_id, alpha, merge_key=key))
            self.link.request_render(preview=True)

    def _on_alpha_released(self, layer_id: str, alpha: float, key: object) -> None:
        if self._doc is not None and not refused_by_lock(self.state, layer_id):
            if self._doc.layers.get(layer_id).alpha != alpha:
                self._push(actions.set_alpha(self._doc, layer_id, alpha, merge_key=key))
            self.link.request_render(preview=False)

    def _on_alpha_edited(self, layer_id: str, alpha: float) -> None:
        if self._doc is not None and not refused_by_lock(self.state, layer_id):
            self._push(actions.set_alpha(self._doc, layer_id, alpha))
            self.link.request_render(preview=False)

    def _on_beta_edited(self, layer_id: str, beta: float) -> None:
        if self._doc is not None and not refused_by_lock(self.state, layer_id):
            remember_beta(self.state, beta)
            self._push(actions.set_params(self._doc, layer_id, beta=beta))
            self.link.request_render(preview=False)

    def _on_run_started(self, layer_id: str) -> None:
        self._row_call(layer_id, "set_running", True, "optimizing…")

    def _on_run_progress(self, layer_id: str, done: int, total: int) -> None:
        self._row_call(layer_id, "set_running", True, f"step {done} / {total}")

    def _on_run_finished(self, layer_id: str, message: str) -> None:
        self._row_call(layer_id, "set_running", False, message or "optimized")

    def delete_current(self) -> None:
        layer = self.current_layer()
        if layer is None or self._doc is None or refused_by_lock(self.state, layer.id, "deleted"):
            return
        ids = self.layer_ids_top_down()
        row = ids.index(layer.id)
        self.runner.cancel(layer.id)
        self._push(actions.remove_layer(self._doc, layer.id))
        if layer.id not in self._doc.layers:
            remaining = self.layer_ids_top_down()
            self.state.set_current_layer(remaining[min(row, len(remaining) - 1)] if remaining else "")
            self.link.request_render(preview=False)

    def duplicate_current(self) -> None:
        layer = self.current_layer()
        if layer is None or self._doc is None:
            return
        command = actions.duplicate_layer(self._doc, layer.id)
        self._push(command)
        if command.layer.id in self._doc.layers:
            self.state.set_current_layer(command.layer.id)
            self.link.request_render(preview=False)

    def move_to_row(self, layer_id: str, display_row: int) -> None:
        """Move a layer so it shows at `display_row` (0 = top of the list = top of the stack)."""
        doc = self._doc
        if doc is None or layer_id not in doc.layers:
            return
        n = len(doc.layers)
        index = n - 1 - max(0, min(display_row, n - 1))
        if index != doc.layers.index_of(layer_id):
            self._push(actions.move_layer(doc, layer_id, index))
            self.link.request_render(preview=False)

    def move_current(self, step: int) -> None:
        """Move the current layer up (+1) or down (-1) the stack."""
        layer = self.current_layer()
        if layer is not None and self._doc is not None:
            row = self.layer_ids_top_down().index(layer.id)
            self.move_to_row(layer.id, row - step)


class _Failed:
    """A direction query that failed, shown like the engine's own error."""

    channels = 0
    largest_beta = None

    def __init__(self, error: str) -> None:
        self.error = error

