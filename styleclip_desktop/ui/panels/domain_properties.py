"""What the Properties panel and the layer row show for a domain layer.

A domain layer's texts and weights are what training made: they are shown, not edited.
Its strength interpolates the generator's weights: the slider runs from 0 (the base
generator) to 1 (the adapted one); the number field takes larger values, which
extrapolate past the adapted generator and are flagged as such.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QCheckBox, QFormLayout, QLabel, QWidget

from styleclip_desktop.document import DomainParams
from styleclip_desktop.document.domain_params import MAX_EXTRAPOLATION
from styleclip_desktop.ui.panels.widgets import ALPHA_SPIN_LIMIT, SLIDER_STEPS_PER_UNIT, AlphaControl

BADGE = "DOM"
EXTRAPOLATION_TEXT = "extrapolation: α above 1 goes past the adapted generator"
WARNING_STYLE = "color: #c0392b;"


def domain_alpha(control: AlphaControl) -> None:
    """Slider 0..1, number field 0 and up."""
    control.slider.blockSignals(True)
    control.slider.setRange(0, SLIDER_STEPS_PER_UNIT * round(MAX_EXTRAPOLATION))
    control.slider.setPageStep(max(1, SLIDER_STEPS_PER_UNIT // 10))
    control.slider.blockSignals(False)
    control.spin.blockSignals(True)
    control.spin.setRange(0.0, ALPHA_SPIN_LIMIT)
    control.spin.blockSignals(False)
    control.spin.setToolTip("Strength: 0 is the original generator, 1 the adapted one; above 1 extrapolates.")


def is_extrapolation(alpha: float) -> bool:
    return float(alpha) > MAX_EXTRAPOLATION


def origin_text(p: DomainParams) -> str:
    return p.origin or "trained in this app"


def size_text(p: DomainParams) -> str:
    return f"{p.size_bytes() / 2**20:.1f} MB"


def _label(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setToolTip(text)
    label.setMinimumWidth(0)
    return label


class DomainRows:
    """The domain rows of the Properties panel's layer form."""

    def __init__(self, form: QFormLayout, p: DomainParams, add: Callable[[str, str, QWidget], None],
                 edit: Callable[[str, Any], None]) -> None:
        form.addRow("Domain", _label(f"{p.source} → {p.target}"))
        form.addRow("Origin", _label(origin_text(p)))
        form.addRow("Steps", _label(str(p.steps) if p.steps else "not recorded"))
        if p.rows:
            form.addRow("Trained rows", _label(", ".join(str(r) for r in p.rows)))
        form.addRow("Weights", _label(size_text(p)))
        box = QCheckBox("Paste back into the photo")
        box.setToolTip("A domain changes the whole crop's look, so it is shown as the crop unless this is on")
        box.toggled.connect(lambda on: edit("paste_back", bool(on)))
        add("paste_back", "", box)
        self.flag = QLabel(EXTRAPOLATION_TEXT)
        self.flag.setWordWrap(True)
        self.flag.setStyleSheet(WARNING_STYLE)
        self.flag.setVisible(False)
        form.addRow("", self.flag)

    def show_alpha(self, alpha: float) -> None:
        self.flag.setVisible(is_extrapolation(alpha))
