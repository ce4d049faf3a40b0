"""Where edits start: type a prompt (with an optional neutral text), press Enter.

Below the field: every prompt used before (searchable, favourites first, one click adds
it again at the strength it was last used with) and a starter set of presets. Presets
carry a suggested alpha with its sign: the antiprompts are used at negative alpha, which
moves the face away from the text.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.ui.panels.editing import (
    DEFAULT_ALPHA,
    GLOBAL_DIRECTION,
    add_prompt_layer,
)
from styleclip_desktop.ui.panels.prompt_history import (
    DEFAULT_NEUTRAL,
    PRESETS,
    HistoryEntry,
    Preset,
    PromptHistory,
)
from styleclip_desktop.ui.state import EditorState

STAR_ON, STAR_OFF = "★", "☆"
STAR_COLUMN, PROMPT_COLUMN, ALPHA_COLUMN = 0, 1, 2
PRESET_COLUMNS = 2


def _signed(alpha: float) -> str:
    return f"{alpha:+g}".replace("-", "−")


class PromptPanel(QWidget):
    def __init__(self, state: EditorState, history: PromptHistory | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.history = history if history is not None else PromptHistory()
        self.setWindowTitle("Prompt")

        self.prompt = QLineEdit()
        self.prompt.setPlaceholderText("Describe the edit, e.g. a face with grey hair")
        self.prompt.setClearButtonEnabled(True)
        self.neutral = QLineEdit()
        self.neutral.setPlaceholderText(f"{DEFAULT_NEUTRAL} (what the edit is measured against)")
        self.neutral.setToolTip("The neutral text: the edit is the difference between the prompt and this. "
                                "Leave empty for \u201ca face\u201d; for hair colours \u201ca face with hair\u201d "
                                "keeps the rest of the face.")
        self.add_button = QPushButton("Add edit")
        form = QFormLayout()
        form.addRow("Prompt", self.prompt)
        form.addRow("Neutral", self.neutral)
        add_line = QHBoxLayout()
        add_line.addStretch(1)
        add_line.addWidget(self.add_button)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search recent prompts")
        self.search.setClearButtonEnabled(True)
        self.history_view = QTreeWidget()
        self.history_view.setColumnCount(3)
        self.history_view.setHeaderHidden(True)
        self.history_view.setRootIsDecorated(False)
        self.history_view.setToolTip("Click a prompt to add it again; click the star to keep it on top")
        header = self.history_view.header()
        # The prompt takes the width the panel has (elided only beyond it); star and
        # strength stay as narrow as their text.
        header.setStretchLastSection(False)
        header.setSectionResizeMode(PROMPT_COLUMN, QHeaderView.ResizeMode.Stretch)
        for column in (STAR_COLUMN, ALPHA_COLUMN):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.history_box = history_box = QGroupBox("Recent Prompts")
        history_layout = QVBoxLayout(history_box)
        history_layout.addWidget(self.search)
        history_layout.addWidget(self.history_view, 1)

        self.preset_buttons: list[QPushButton] = []
        presets_box = QGroupBox("Presets")
        presets_layout = QVBoxLayout(presets_box)
        groups: dict[str, list[Preset]] = {}
        for preset in PRESETS:
            groups.setdefault(preset.group, []).append(preset)
        for group, presets in groups.items():
            heading = f"<b>{group}</b>"
            if all(p.antiprompt for p in presets):
                heading += " \u2014 away from the text"
            presets_layout.addWidget(QLabel(heading))
            grid = QGridLayout()
            for i, preset in enumerate(presets):
                button = QPushButton(f"{preset.label}  {_signed(preset.alpha)}")
                if preset.antiprompt:
                    button.setToolTip(f"Antiprompt: moves the face away from \u201c{preset.target}\u201d "
                                      f"(vs \u201c{preset.neutral}\u201d, alpha {_signed(preset.alpha)})")
                else:
                    button.setToolTip(f"\u201c{preset.target}\u201d vs \u201c{preset.neutral}\u201d at alpha "
                                      f"{preset.alpha:g}")
                button.clicked.connect(lambda _checked=False, p=preset: self.use_preset(p))
                grid.addWidget(button, i // PRESET_COLUMNS, i % PRESET_COLUMNS)
                self.preset_buttons.append(button)
            presets_layout.addLayout(grid)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(add_line)
        layout.addWidget(history_box, 1)
        layout.addWidget(presets_box)

        self.prompt.returnPressed.connect(self.submit)
        self.neutral.returnPressed.connect(self.submit)
        self.add_button.clicked.connect(self.submit)
        self.search.textChanged.connect(lambda _text: self.refresh_history())
        self.history_view.itemClicked.connect(self._on_history_clicked)
        self._refresh_pending = False
        self.history.on_change(self._schedule_refresh)
        self.refresh_history()

    # -- adding -----------------------------------------------------------------------

    def submit(self) -> str | None:
        """Add a global-direction layer from the fields (alpha 3, at the β last chosen)."""
        layer_id = add_prompt_layer(self.state, self.prompt.text(), kind=GLOBAL_DIRECTION,
                                    neutral=self.neutral.text(), alpha=DEFAULT_ALPHA, history=self.history)
        if layer_id is not None:
            self.prompt.clear()
        return layer_id

    def use_preset(self, preset: Preset) -> str | None:
        return add_prompt_layer(self.state, preset.target, neutral=preset.neutral, alpha=preset.alpha,
                                history=self.history)

    def reuse(self, entry: HistoryEntry) -> str | None:
        return add_prompt_layer(self.state, entry.target, kind=entry.kind, neutral=entry.neutral,
                                alpha=entry.alpha, history=self.history)

    # -- history ----------------------------------------------------------------------

    def shown_entries(self) -> list[HistoryEntry]:
        items = (self.history_view.topLevelItem(i) for i in range(self.history_view.topLevelItemCount()))
        return [item.data(PROMPT_COLUMN, Qt.ItemDataRole.UserRole) for item in items if item is not None]

    def _schedule_refresh(self) -> None:
        # Deferred: the change may come from a click on the very item a refresh deletes.
        if not self._refresh_pending:
            self._refresh_pending = True
            QTimer.singleShot(0, self, self.refresh_history)

    def refresh_history(self) -> None:
        self._refresh_pending = False
        self.history_view.clear()
        for entry in self.history.search(self.search.text()):
            neutral = "" if entry.neutral == DEFAULT_NEUTRAL else f"  (vs {entry.neutral})"
            item = QTreeWidgetItem([STAR_ON if entry.favourite else STAR_OFF, entry.target + neutral,
                                    _signed(entry.alpha)])
            item.setData(PROMPT_COLUMN, Qt.ItemDataRole.UserRole, entry)
            item.setToolTip(PROMPT_COLUMN, f"{entry.target}{neutral}\nused {entry.uses}× · click to add it again")
            item.setToolTip(STAR_COLUMN, "Favourite")
            self.history_view.addTopLevelItem(item)

    def _on_history_clicked(self, item: QTreeWidgetItem, column: int) -> None:
        entry = item.data(PROMPT_COLUMN, Qt.ItemDataRole.UserRole)
        if not isinstance(entry, HistoryEntry):
            return
        if column == STAR_COLUMN:
            self.history.set_favourite(entry, not entry.favourite)
        else:
            self.reuse(entry)
