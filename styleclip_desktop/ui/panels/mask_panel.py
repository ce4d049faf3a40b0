"""The Mask panel: where the current layer may act, and the brush that paints it.

Tool options (brush or eraser, size, hardness, opacity) belong to the canvas's mask tool;
the mask's own settings (feather, the resolution its blend starts at, enabled) and the
one-click edits (fill, clear, invert, an automatic region, remove) are undoable changes of
the layer, through the same commands as the window's Mask menu.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.document.mask_ops import MAX_SIZE, MIN_SIZE
from styleclip_desktop.document.masks import MAX_FEATHER
from styleclip_desktop.ui.panels.mask_actions import MaskActions, MaskCommands, start_resolutions
from styleclip_desktop.ui.panels.widgets import DocumentFollower, is_alive
from styleclip_desktop.ui.state import EditorState

if TYPE_CHECKING:
    from styleclip_desktop.ui.mask_tools import MaskTool

HINT = ("Q paints on the picture, B brush, E eraser, X swaps them, [ and ] size the brush. "
        "Red shows where the layer does not act. Hold \\ for the original.")


def _percent(tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(0, 100)
    box.setSuffix(" %")
    box.setToolTip(tip)
    return box


class MaskPanel(DocumentFollower, QWidget):
    def __init__(self, state: EditorState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setWindowTitle("Mask")
        self.commands = MaskCommands(state, self.window)
        self.tool: MaskTool | None = None
        self.mask_actions: MaskActions | None = None

        self.target = QLabel()
        self.target.setWordWrap(True)
        self.add_button = QPushButton("Add Mask")
        self.add_button.setToolTip("A mask that reveals all: paint or erase to confine the layer")
        self.add_button.clicked.connect(self.commands.add)
        self.region_button = QToolButton()
        self.region_button.setText("Automatic Region")
        self.region_button.setToolTip("A mask from the face's own regions: hair, skin, eyes, lips, …")
        self.region_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)

        self.paint_button = QToolButton()
        self.paint_button.setText("Paint Mask")
        self.paint_button.setCheckable(True)
        self.brush_radio, self.eraser_radio = QRadioButton("Brush"), QRadioButton("Eraser")
        self._tool_group = QButtonGroup(self)
        self._tool_group.addButton(self.brush_radio)
        self._tool_group.addButton(self.eraser_radio)
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(int(MIN_SIZE), int(MAX_SIZE))
        self.size_box = QSpinBox()
        self.size_box.setRange(int(MIN_SIZE), int(MAX_SIZE))
        self.size_box.setSuffix(" px")
        self.size_box.setToolTip("Brush diameter, in pixels of the 512 px aligned face")
        self.hardness = _percent("0 %: a soft edge that fades out; 100 %: a hard edge")
        self.opacity = _percent("The most one stroke changes the mask")

        self.fill_button, self.clear_button = QPushButton("Fill"), QPushButton("Clear")
        self.invert_button = QPushButton("Invert")
        self.fill_button.setToolTip("The layer acts everywhere")
        self.clear_button.setToolTip("The layer acts nowhere")
        self.invert_button.setToolTip("Swap where the layer acts and where it does not")
        self.fill_button.clicked.connect(self.commands.fill)
        self.clear_button.clicked.connect(self.commands.clear)
        self.invert_button.clicked.connect(self.commands.invert)
        self.feather = QDoubleSpinBox()
        self.feather.setRange(0.0, MAX_FEATHER)
        self.feather.setDecimals(1)
        self.feather.setSuffix(" px")
        self.feather.setKeyboardTracking(False)
        self.feather.setToolTip("Soften the mask's edge (a blur of this many pixels)")
        self.feather.valueChanged.connect(self._on_feather)
        self.start_res = QComboBox()
        self.start_res.setToolTip("The generator resolution from which the mask confines the edit: lower "
                                  "keeps the edit's coarse shape changes inside the mask too")
        self.start_res.activated.connect(self._on_start_res)
        self.enabled = QCheckBox("Enabled")
        self.enabled.setToolTip("Off: the mask is kept but ignored (the layer acts everywhere)")
        self.enabled.toggled.connect(lambda on: self._if_changed(self.commands.set_enabled, on))
        self.overlay = QCheckBox("Show overlay")
        self.overlay.setToolTip("Red over the picture where the layer does not act")
        self.remove_button = QPushButton("Remove Mask")
        self.remove_button.clicked.connect(self.commands.remove)
        self.hint = QLabel(HINT)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(mid);")

        # Scrolled, so a short window still fits the panel's dock (it shares it with Prompt).
        content = QWidget()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        layout.addWidget(self.target)
        top = QHBoxLayout()
        top.addWidget(self.add_button)
        top.addWidget(self.region_button)
        top.addStretch(1)
        layout.addLayout(top)
        tools = QHBoxLayout()
        for tool_widget in (self.paint_button, self.brush_radio, self.eraser_radio):
            tools.addWidget(tool_widget)
        tools.addStretch(1)
        layout.addLayout(tools)
        form = QFormLayout()
        size_row = QHBoxLayout()
        size_row.addWidget(self.size_slider, 1)
        size_row.addWidget(self.size_box)
        form.addRow("Size", size_row)
        form.addRow("Hardness", self.hardness)
        form.addRow("Opacity", self.opacity)
        layout.addLayout(form)
        edits = QGridLayout()
        for i, button in enumerate((self.fill_button, self.clear_button, self.invert_button)):
            edits.addWidget(button, 0, i)
        layout.addLayout(edits)
        settings = QFormLayout()
        settings.addRow("Feather", self.feather)
        settings.addRow("Start at", self.start_res)
        layout.addLayout(settings)
        flags = QHBoxLayout()
        flags.addWidget(self.enabled)
        flags.addWidget(self.overlay)
        flags.addStretch(1)
        layout.addLayout(flags)
        layout.addWidget(self.remove_button)
        layout.addWidget(self.hint)
        layout.addStretch(1)

        state.document_replaced.connect(self.follow)
        state.current_layer_changed.connect(lambda _id: self.sync() if is_alive(self) else None)
        state.engine_changed.connect(lambda _engine: self.sync() if is_alive(self) else None)
        self.follow(state.document)

    # -- the canvas's tool -------------------------------------------------------------

    def bind_canvas(self, canvas: Any) -> None:
        """Drive `canvas.mask_tool` (the window calls this once both exist)."""
        tool: MaskTool = canvas.mask_tool
        self.tool = tool
        self.mask_actions = MaskActions(self.commands, tool, self)
        self.region_button.setMenu(self.mask_actions.regions)
        self.paint_button.toggled.connect(tool.set_painting)
        self.brush_radio.toggled.connect(lambda on: tool.set_brush(erase=not on))
        self.size_slider.valueChanged.connect(lambda v: tool.set_brush(size=float(v)))
        self.size_box.valueChanged.connect(lambda v: tool.set_brush(size=float(v)))
        self.hardness.valueChanged.connect(lambda v: tool.set_brush(hardness=v / 100.0))
        self.opacity.valueChanged.connect(lambda v: tool.set_brush(opacity=v / 100.0))
        self.overlay.toggled.connect(tool.set_overlay)
        tool.changed.connect(lambda: self.sync() if is_alive(self) else None)
        self.sync()

    def fill_mask_menu(self, menu: QMenu, window: QWidget) -> None:
        """The window's Mask menu: these commands, their shortcuts window-wide."""
        if self.mask_actions is not None:
            self.mask_actions.fill_menu(menu)
            window.addActions([a for a in menu.actions() if not a.isSeparator()])

    # -- document ----------------------------------------------------------------------

    def _if_changed(self, fn: Any, value: Any) -> None:
        layer = self.commands.layer()
        if layer is not None and layer.mask is not None:
            fn(value)

    def _on_feather(self, value: float) -> None:
        layer = self.commands.layer()
        if layer is not None and layer.mask is not None and abs(layer.mask.feather - value) > 1e-9:
            self.commands.set_feather(value)

    def _on_start_res(self, index: int) -> None:
        res = self.start_res.itemData(index)
        layer = self.commands.layer()
        if res is not None and layer is not None and layer.mask is not None and layer.mask.start_res != res:
            self.commands.set_start_res(int(res))

    def sync(self) -> None:
        """Show the current layer's mask and the tool as they are, announcing nothing."""
        if not is_alive(self):
            return
        layer = self.commands.layer()
        mask = layer.mask if layer is not None else None
        if layer is None:
            self.target.setText("Choose a layer in Layers to give it a mask.")
        elif mask is None:
            self.target.setText(f'"{layer.name}" acts on the whole face. Add a mask, pick an automatic '
                                "region, or paint (Q) to confine it.")
        else:
            state = "" if mask.enabled else " (disabled)"
            self.target.setText(f'Mask of "{layer.name}"{state}' + (" — locked" if layer.locked else ""))
        editable = layer is not None and not layer.locked
        self.add_button.setEnabled(editable and mask is None)
        self.region_button.setEnabled(editable and self.mask_actions is not None)
        mask_widgets: list[QWidget] = [self.fill_button, self.clear_button, self.invert_button, self.feather,
                                       self.start_res, self.enabled, self.remove_button]
        for w in mask_widgets:
            w.setEnabled(editable and mask is not None)
        widgets: list[Any] = [self.feather, self.enabled, self.start_res, self.paint_button, self.brush_radio,
                              self.eraser_radio, self.size_box, self.size_slider, self.hardness, self.opacity,
                              self.overlay]
        for w in widgets:
            w.blockSignals(True)
        try:
            self.feather.setValue(mask.feather if mask is not None else 0.0)
            self.enabled.setChecked(mask.enabled if mask is not None else True)
            self._fill_start_res(mask.start_res if mask is not None else None)
            tool = self.tool
            for w in widgets[3:]:
                w.setEnabled(tool is not None)
            if tool is not None:
                self.paint_button.setChecked(tool.painting)
                self.brush_radio.setChecked(not tool.brush.erase)
                self.eraser_radio.setChecked(tool.brush.erase)
                self.size_box.setValue(round(tool.brush.size))
                self.size_slider.setValue(round(tool.brush.size))
                self.hardness.setValue(round(tool.brush.hardness * 100))
                self.opacity.setValue(round(tool.brush.opacity * 100))
                self.overlay.setChecked(tool.show_overlay)
        finally:
            for w in widgets:
                w.blockSignals(False)
        if self.mask_actions is not None:
            self.mask_actions.update()

    def _fill_start_res(self, current: int | None) -> None:
        choices = start_resolutions(self.state.engine)
        if current is not None and current not in choices:
            choices = sorted({*choices, current})
        if [self.start_res.itemData(i) for i in range(self.start_res.count())] != choices:
            self.start_res.clear()
            for r in choices:
                self.start_res.addItem(f"{r} px", r)
        if current is not None:
            self.start_res.setCurrentIndex(max(0, self.start_res.findData(current)))
