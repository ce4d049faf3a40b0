"""Sliders: ready layers from the generator's own weights, with no prompt and no download.

The directions (SeFa, `methods.sefa`) are computed once per generator, off the UI thread,
and cached. Until CLIP has named them they are listed by layer group and rank; "Name with
CLIP" renders a few faces per direction in the background (progress and Cancel in the
status bar) and keeps the names for next time. Double-click, Enter or "Add as Layer"
adds the selected direction as a Slider layer, one undoable step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.document import actions
from styleclip_desktop.ui.panels.engine_link import EngineLink, user_message
from styleclip_desktop.ui.panels.widgets import is_alive
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)
TOP = 5  # directions listed per layer group
ROLE = Qt.ItemDataRole.UserRole


@dataclass(frozen=True)
class Entry:
    group: str
    index: int
    share: float
    name: str = "unnamed"
    sign: int = 1
    score: float | None = None

    def text(self) -> str:
        what = self.name if self.name != "unnamed" else f"{self.group} {self.index + 1}"
        score = f", CLIP {self.score:.2f}" if self.score is not None and self.name != "unnamed" else ""
        return f"{what}  ({self.group} #{self.index + 1}, {100 * self.share:.1f}%{score})"


def _generator(engine: Any) -> Any:
    return getattr(getattr(engine, "renderer", None), "G", None)


def _clip(engine: Any) -> Any:
    return getattr(getattr(engine, "models", None), "clip", None)


def list_entries(engine: Any, bases: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Entry]]:
    """The generator's bases (`bases`, else from the cache) and the entries to list (named
    where CLIP has named them)."""
    from styleclip_desktop.methods import sefa

    G = _generator(engine)
    if bases is None:
        bases = sefa.cached_bases(G, sefa.bases_path(G))
    named: dict[tuple[str, int], sefa.NamedDirection] = {}
    clip = _clip(engine)
    if clip is not None:
        try:
            vocab = sefa.load_vocabulary()
            named = {(d.group, d.index): d for d in
                     sefa.load_names(sefa.names_path(G, str(clip.model_hash), vocab))}
        except Exception:  # names are a convenience: the sliders work unnamed
            log.debug("slider names unavailable", exc_info=True)
    entries = []
    for g, b in bases.items():
        share = b.share()
        for i in range(min(TOP, len(b.vectors))):
            d = named.get((g, i))
            entries.append(Entry(g, i, float(share[i])) if d is None else
                           Entry(g, i, float(share[i]), d.name, d.sign, d.score))
    return bases, entries


def name_entries(engine: Any, bases: dict[str, Any], ctx: Any) -> tuple[dict[str, Any], list[Entry]]:
    """Name the listed directions with CLIP (renders faces; progress and cancel through `ctx`)."""
    from styleclip_desktop.methods import sefa

    G, clip = _generator(engine), _clip(engine)
    vocab = sefa.load_vocabulary()
    named = sefa.name_with_clip(G, clip, bases, vocab, top=TOP,
                                progress=lambda d, t: ctx.progress(d, t, "naming sliders with CLIP"),
                                cancelled=ctx.cancelled)
    sefa.save_names(named, sefa.names_path(G, str(clip.model_hash), vocab))
    return list_entries(engine, bases)


class SlidersPanel(QWidget):
    def __init__(self, state: EditorState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.link = EngineLink.of(state)
        self.setWindowTitle("Sliders")
        self.bases: dict[str, Any] = {}
        self.entries: list[Entry] = []
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.list = QListWidget()
        self.list.itemActivated.connect(lambda _item: self.add_selected())
        self.list.currentRowChanged.connect(lambda _row: self._update_enabled())
        self.add_button = QPushButton("Add as Layer")
        self.add_button.clicked.connect(self.add_selected)
        self.name_button = QPushButton("Name with CLIP")
        self.name_button.setToolTip("Render a few faces per direction and ask CLIP which attribute each one moves")
        self.name_button.clicked.connect(self.name_with_clip)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.name_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.note)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        state.engine_changed.connect(self._on_engine)
        state.document_replaced.connect(lambda _doc: self._update_enabled())
        self._on_engine(state.engine)

    def _on_engine(self, engine: Any) -> None:
        self.bases, self.entries = {}, []
        self._show()
        if _generator(engine) is None:
            self.note.setText("The sliders appear once the models are loaded.")
            return
        self.note.setText("Finding the generator's own directions…")
        self.link.run_in_worker(lambda: list_entries(engine), self._listed, key="sliders",
                                on_error=self._failed, background=True)  # after the first render

    def _listed(self, result: tuple[dict[str, Any], list[Entry]]) -> None:
        if not is_alive(self):
            return
        self.bases, self.entries = result
        synthetic = bool(getattr(_generator(self.state.engine), "synthetic", False))
        self.note.setText("Directions found in this generator's own weights (SeFa), largest first"
                          + (". The demo models' weights are random: names and looks mean nothing." if synthetic
                             else ("." if any(e.name != "unnamed" for e in self.entries)
                                   else "; unnamed until CLIP names them.")))
        self._show()

    def _failed(self, exc: BaseException) -> None:
        if is_alive(self):
            self.note.setText(f"The sliders are not available: {user_message(exc, 'finding the sliders')}")

    def _show(self) -> None:
        self.list.clear()
        for e in self.entries:
            item = QListWidgetItem(e.text())
            item.setData(ROLE, e)
            self.list.addItem(item)
        if self.entries:
            self.list.setCurrentRow(0)
        self._update_enabled()

    def _update_enabled(self) -> None:
        self.add_button.setEnabled(self.state.document is not None and self.list.currentItem() is not None)
        self.name_button.setEnabled(bool(self.entries) and _clip(self.state.engine) is not None)

    def add_selected(self) -> None:
        from styleclip_desktop.methods import sefa

        item = self.list.currentItem()
        doc = self.state.document
        if item is None or doc is None:
            return
        e: Entry = item.data(ROLE)
        params = sefa.slider_params(self.bases[e.group], e.index, e.name, e.sign)
        self.state.push(actions.add_layer(doc, params, alpha=params.default_alpha))
        self.link.request_render(preview=False)

    def name_with_clip(self) -> None:
        engine = self.state.engine
        if not self.entries or _clip(engine) is None:
            return
        self.name_button.setEnabled(False)
        bases = self.bases
        self.state.run_job(lambda ctx: name_entries(engine, bases, ctx), "Naming sliders with CLIP",
                           on_result=self._listed, on_error=self._named_failed,
                           on_cancel=self._update_enabled, key="name-sliders")

    def _named_failed(self, exc: BaseException) -> None:
        if is_alive(self):
            self._update_enabled()
            self.state.error.emit(user_message(exc, "Naming the sliders"))
