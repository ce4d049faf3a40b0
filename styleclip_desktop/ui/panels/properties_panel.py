"""The current layer's parameters, editable, and what the document was made from.

Each edit is one undoable `set_params` (or `set_alpha`) step. The form is rebuilt only
when the current layer or its method changes; otherwise values are refreshed in place,
leaving alone a text field the user is typing in.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.document import (
    Document,
    DomainParams,
    GlobalDirectionParams,
    Layer,
    MapperParams,
    OptimizationParams,
    SliderParams,
    actions,
)
from styleclip_desktop.methods import optimization_settings as opt_settings
from styleclip_desktop.ui.panels.domain_properties import DomainRows, domain_alpha
from styleclip_desktop.ui.panels.editing import refused_by_lock
from styleclip_desktop.ui.panels.engine_link import EngineLink
from styleclip_desktop.ui.panels.leak_bars import LeakBars
from styleclip_desktop.ui.panels.widgets import AlphaControl, DocumentFollower, is_alive
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)

# The mappers published with the paper, offered when the model catalog cannot be read.
KNOWN_MAPPERS = ("afro", "angry", "beyonce", "bobcut", "bowlcut", "curly_hair", "depp", "hilary_clinton",
                 "mohawk", "purple_hair", "surprised", "taylor_swift", "trump", "zuckerberg")
WARNING_STYLE = "color: #c0392b;"


def mapper_names() -> list[str]:
    try:
        from styleclip_desktop.weights.catalog import MAPPER_GROUP, load_catalog

        names = [e.mapper_name for e in load_catalog().group(MAPPER_GROUP) if e.mapper_name]
    except Exception:  # a damaged catalog should not cost the user the panel
        log.debug("model catalog unreadable; using the published mapper names", exc_info=True)
        names = []
    return names or list(KNOWN_MAPPERS)


def loaded_identities(engine: Any) -> dict[str, str] | None:
    """role -> sha256 of the models the engine has loaded (None: unknown)."""
    for holder in (engine, getattr(engine, "models", None), getattr(getattr(engine, "renderer", None),
                                                                    "models", None)):
        ids = getattr(holder, "identities", None)
        if isinstance(ids, dict):
            return ids
    return None


def kept_from_text(text: str) -> tuple[str, ...]:
    """"age, glasses" -> ("age", "glasses"): the Keep field's list (empty: keep nothing)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _typing_in(widget: QWidget) -> bool:
    """The user is in the middle of typing here: leave the text alone."""
    focus = QApplication.focusWidget()
    return focus is not None and (focus is widget or widget.isAncestorOf(focus))


def _short(digest: str) -> str:
    return digest[:10] + "…" if len(digest) > 10 else digest


def document_info(doc: Document | None, engine: Any) -> list[tuple[str, str, bool]]:
    """(label, text, is_warning) lines describing the document."""
    if doc is None:
        return [("Document", "no document open", False)]
    lines: list[tuple[str, str, bool]] = []
    if doc.source is not None:
        # The file's name: a whole path has no place to wrap and would widen the dock.
        name = Path(doc.source.path.replace("\\", "/")).name or doc.source.path
        lines.append(("Source photo", f"{name} ({_short(doc.source.sha256)})", False))
    elif doc.seed is not None:
        lines.append(("Source", f"generated face, seed {doc.seed}", False))
    else:
        lines.append(("Source", "no photo", False))
    if doc.description:
        lines.append(("Description", doc.description, False))
    models = ", ".join(f"{role} {_short(d)}" for role, d in sorted(doc.models.items())) or "not recorded"
    lines.append(("Models", models, False))
    if doc.synthetic:
        lines.append(("Synthetic", "made with synthetic test models: the pictures are placeholders, not real edits", True))
    if engine is not None:
        label = getattr(engine, "backend_label", "") or "loaded"
        res = getattr(engine, "resolution", None)
        lines.append(("Engine", f"{label}" + (f", {res} px" if res else ""), False))
        loaded = loaded_identities(engine)
        if loaded is not None:
            for message in doc.model_mismatches(loaded):
                lines.append(("Model mismatch", message, True))
    return lines


class PropertiesPanel(DocumentFollower, QWidget):
    def __init__(self, state: EditorState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.link = EngineLink.of(state)
        self.setWindowTitle("Properties")
        self._doc: Document | None = None
        self._shown: tuple[str, str] | None = None  # (layer id, kind) the form is built for
        self.fields: dict[str, QWidget] = {}
        self.alpha: AlphaControl | None = None
        self.presets: QComboBox | None = None  # an optimization layer's published defaults
        self.leak: LeakBars | None = None
        self.domain: DomainRows | None = None
        self._doc_lines: list[tuple[str, str, bool]] | None = None

        self.layer_box = QGroupBox("Layer")
        self.layer_form = QFormLayout(self.layer_box)
        self.doc_box = QGroupBox("Document")
        self.doc_form = QFormLayout(self.doc_box)
        # In a narrow dock a long value goes below its label instead of being cut off.
        self.doc_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self._backend_engines: list[Any] = []  # engines whose backend changes are heard
        # Scrolled rather than squeezed: the panel may be shorter than its form, so the
        # layer list above it keeps its room.
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.layer_box)
        layout.addWidget(self.doc_box)
        layout.addStretch(1)
        self.scroller = QScrollArea()
        self.scroller.setWidgetResizable(True)
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        self.scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroller.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroller)

        state.document_replaced.connect(self._bind)
        state.current_layer_changed.connect(lambda _id: self.sync())
        state.playhead_changed.connect(lambda _frame: self.sync() if is_alive(self) else None)
        state.engine_changed.connect(self._on_engine)
        state.render_ready.connect(lambda _image, preview: self._measure_leak() if not preview else None)
        self._bind(state.document)
        self._on_engine(state.engine)

    def _bind(self, doc: Document | None) -> None:
        self.follow(doc)

    def _on_engine(self, engine: Any) -> None:
        listen = getattr(engine, "on_backend_changed", None)
        if callable(listen) and not any(e is engine for e in self._backend_engines):
            # Called on the exporting thread once the ONNX graphs are ready.
            self._backend_engines.append(engine)
            link = self.link
            listen(lambda _label: link.call_in_ui(self._backend_changed))
        self.sync()

    def _backend_changed(self) -> None:
        if is_alive(self):
            self._show_document()

    def current_layer(self) -> Layer | None:
        doc, layer_id = self._doc, self.state.current_layer_id
        if doc is None or not layer_id or layer_id not in doc.layers:
            return None
        return doc.layers.get(layer_id)

    # -- view ------------------------------------------------------------------------

    def sync(self) -> None:
        layer = self.current_layer()
        shown = None if layer is None else (layer.id, layer.kind)
        if shown != self._shown:
            self._build(layer)
            self._shown = shown
        if layer is not None:
            self._show_values(layer)
        self._show_document()

    def _clear(self, form: QFormLayout) -> None:
        while form.rowCount():
            form.removeRow(0)

    def _build(self, layer: Layer | None) -> None:
        self._clear(self.layer_form)
        self.fields = {}
        self.alpha = None
        self.presets = None
        self.leak = None
        self.domain = None
        if layer is None:
            self.layer_form.addRow(QLabel("No layer selected"))
            return
        self._build_params(layer)
        self.leak = LeakBars(self.link)
        self.layer_form.addRow(QLabel("What else it changes"))
        self.layer_form.addRow(self.leak)
        self._measure_leak()

    def _measure_leak(self) -> None:
        """After an exact render: the current layer's leak report, in the background."""
        layer = self.current_layer()
        if not is_alive(self) or self.leak is None or layer is None or self._doc is None:
            return
        self.leak.measure(self._doc, layer.id, self.state.playhead_alphas())

    def _build_params(self, layer: Layer) -> None:
        self.layer_form.addRow("Method", QLabel(layer.params.label))
        self.alpha = AlphaControl(layer.kind)
        self.alpha.dragged.connect(self._alpha_dragged)
        self.alpha.released.connect(self._alpha_released)
        self.alpha.edited.connect(lambda v: self._set_alpha(v, None, preview=False))
        self.layer_form.addRow("Strength", self.alpha)
        p = layer.params
        if isinstance(p, DomainParams):
            domain_alpha(self.alpha)
            self.domain = DomainRows(self.layer_form, p, self._add, self._edit)
        elif isinstance(p, GlobalDirectionParams):
            self._text("target", "Target text")
            self._text("neutral", "Neutral text")
            self._double("beta", "β", 0.0, 1.0, 2, 0.01)
            self._keep("The direction is made orthogonal to each one's own direction.")
        elif isinstance(p, MapperParams):
            combo = QComboBox()
            combo.setEditable(True)
            combo.addItems(mapper_names())
            line = combo.lineEdit()
            assert line is not None  # editable combo boxes always have one
            line.editingFinished.connect(lambda: self._edit("checkpoint", combo.currentText().strip()))
            combo.activated.connect(lambda _i: self._edit("checkpoint", combo.currentText().strip()))
            self._add("checkpoint", "Mapper", combo)
            for name, label in (("coarse", "Coarse (shape, pose)"), ("medium", "Medium (features, hair style)"),
                                ("fine", "Fine (colours)")):
                box = QCheckBox(label)
                box.toggled.connect(lambda on, n=name: self._edit(n, bool(on)))
                self._add(name, "" if name != "coarse" else "Sub-mappers", box)
        elif isinstance(p, SliderParams):
            where = QLabel(f"{p.group} layers, #{p.index + 1}, from the generator's own weights")
            where.setWordWrap(True)
            self.layer_form.addRow("Direction", where)
            self._keep("The slider then moves in style space, orthogonal to each one's own direction.")
        elif isinstance(p, OptimizationParams):
            self._text("prompt", "Prompt")
            self._double("lambda_l2", "λ L2 (stay close)", 0.0, 10.0, 4, 0.001)
            self._double("lambda_id", "λ ID (keep identity)", 0.0, 10.0, 4, 0.001)
            self._keep("Each one's CLIP similarity is held at its start, weighted by λ keep.")
            self._double("lambda_keep", "λ keep", 0.0, 100.0, 3, 0.1)
            self._int("steps", "Steps", 1, 100_000)
            self._int("seed", "Seed", 0, 2**31 - 1)
            self._choice("clip_input", "CLIP input", opt_settings.CLIP_INPUTS,
                         "published: as the paper's loss (its λ and steps were tuned with it); "
                         "exact: CLIP's own resize and normalisation")
            self._choice("result", "Result", opt_settings.RESULTS,
                         "last: the final step, as published; best: the step with the lowest CLIP loss")
            defaults = QLabel("Published defaults:\n" + opt_settings.defaults_text())
            defaults.setWordWrap(True)
            self.layer_form.addRow(defaults)
            apply = QComboBox()
            apply.addItem("Use the published defaults of…")
            modes = (opt_settings.EDIT, opt_settings.EDIT_IDENTITY)
            apply.addItems([m.label for m in modes])
            apply.activated.connect(lambda i: self._apply_preset(modes[i - 1]) if i > 0 else None)
            self.presets = apply
            self.layer_form.addRow(apply)
            note = QLabel("Changing these drops the optimized result; run the layer again.")
            note.setWordWrap(True)
            self.layer_form.addRow(note)

    def _keep(self, how: str) -> None:
        keep = QLineEdit()
        keep.setPlaceholderText("e.g. age, glasses")
        keep.setToolTip(f"Attributes this edit must leave alone, separated by commas: age, gender, glasses, "
                        f"or any text. {how}")
        keep.editingFinished.connect(lambda: self._edit("keep", kept_from_text(keep.text())))
        self._add("keep", "Keep", keep)

    def _add(self, name: str, label: str, widget: QWidget) -> None:
        self.fields[name] = widget
        self.layer_form.addRow(label, widget)

    def _apply_preset(self, preset: opt_settings.OptimizationPreset) -> None:
        """Steps and weights of a published mode, in one undo step."""
        if self.presets is not None:
            self.presets.setCurrentIndex(0)
        layer = self.current_layer()
        if layer is None or self._doc is None or refused_by_lock(self.state, layer.id):
            return
        changes = {"steps": preset.steps, "lambda_l2": preset.lambda_l2, "lambda_id": preset.lambda_id}
        if all(layer.params.to_json().get(k) == value for k, value in changes.items()):
            return
        self.state.push(actions.set_params(self._doc, layer.id, **changes))
        self.link.request_render(preview=False)

    def _choice(self, name: str, label: str, options: tuple[str, ...], tip: str) -> None:
        combo = QComboBox()
        combo.addItems(list(options))
        combo.setToolTip(tip)
        combo.activated.connect(lambda _i: self._edit(name, combo.currentText()))
        self._add(name, label, combo)

    def _text(self, name: str, label: str) -> None:
        edit = QLineEdit()
        edit.editingFinished.connect(lambda: self._edit(name, edit.text().strip()))
        self._add(name, label, edit)

    def _double(self, name: str, label: str, lo: float, hi: float, decimals: int, step: float) -> None:
        spin = QDoubleSpinBox()
        spin.setRange(lo, hi)
        spin.setDecimals(decimals)
        spin.setSingleStep(step)
        spin.setKeyboardTracking(False)
        spin.valueChanged.connect(lambda v: self._edit(name, float(v)))
        self._add(name, label, spin)

    def _int(self, name: str, label: str, lo: int, hi: int) -> None:
        spin = QSpinBox()
        spin.setRange(lo, hi)
        spin.setKeyboardTracking(False)
        spin.valueChanged.connect(lambda v: self._edit(name, int(v)))
        self._add(name, label, spin)

    def _show_values(self, layer: Layer) -> None:
        if self.alpha is not None:
            self.alpha.set_value(self.state.shown_alpha(layer.id))  # an animated strength at the playhead
            self.alpha.setEnabled(not layer.locked)
            if self.domain is not None:
                self.domain.show_alpha(self.alpha.value())
        for name, widget in self.fields.items():
            value = getattr(layer.params, name, None)
            widget.blockSignals(True)
            if isinstance(widget, QLineEdit):
                if not _typing_in(widget):
                    widget.setText(", ".join(value) if isinstance(value, tuple | list) else str(value))
            elif isinstance(widget, QComboBox):
                if not _typing_in(widget):
                    widget.setCurrentText(str(value))
            elif isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            elif isinstance(widget, QDoubleSpinBox | QSpinBox):
                widget.setValue(value)  # type: ignore[arg-type]
            widget.blockSignals(False)
            widget.setEnabled(not layer.locked)

    def _show_document(self) -> None:
        lines = document_info(self._doc, self.state.engine)
        if lines == self._doc_lines:
            return
        self._doc_lines = lines
        self._clear(self.doc_form)
        for label, text, warn in lines:
            value = QLabel(text)
            value.setWordWrap(True)
            value.setToolTip(text)
            value.setMinimumWidth(0)
            if warn:
                value.setStyleSheet(WARNING_STYLE)
            self.doc_form.addRow(label, value)

    def info_lines(self) -> list[tuple[str, str, bool]]:
        return document_info(self._doc, self.state.engine)

    # -- edits -----------------------------------------------------------------------

    def _edit(self, name: str, value: Any) -> None:
        layer = self.current_layer()
        if layer is None or self._doc is None or value == "":
            return
        if getattr(layer.params, name, None) == value or refused_by_lock(self.state, layer.id):
            return
        self.state.push(actions.set_params(self._doc, layer.id, **{name: value}))
        self.link.request_render(preview=False)

    def _set_alpha(self, value: float, key: object, preview: bool) -> None:
        layer = self.current_layer()
        if layer is None or self._doc is None or refused_by_lock(self.state, layer.id):
            return
        if layer.alpha != value:
            self.state.push(actions.set_alpha(self._doc, layer.id, value, merge_key=key))
        self.link.request_render(preview=preview)

    def _alpha_dragged(self, value: float, key: object) -> None:
        self._set_alpha(value, key, preview=True)

    def _alpha_released(self, value: float, key: object) -> None:
        self._set_alpha(value, key, preview=False)
