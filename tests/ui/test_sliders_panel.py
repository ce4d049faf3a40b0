"""The Sliders panel on the demo models: listed, added as undoable layers, named by CLIP."""

from __future__ import annotations

from typing import Any

import numpy as np

from styleclip_desktop.document import Document, SliderParams
from styleclip_desktop.methods import sefa
from styleclip_desktop.ui.engines import generator_of
from styleclip_desktop.ui.panels.sliders_panel import TOP, SlidersPanel


def _panel(window: Any) -> SlidersPanel:
    dock = window.docks["slidersDock"]
    panel = dock.widget()
    assert isinstance(panel, SlidersPanel), panel
    return panel


def test_sliders_are_listed_added_as_layers_and_undone(qtbot: Any, make_window: Any, engine: Any,
                                                       seed_document: Document) -> None:
    w = make_window(engine)
    panel = _panel(w)
    qtbot.waitUntil(lambda: bool(panel.entries), timeout=30_000)
    G = generator_of(engine)
    bases = sefa.factorize_all(G)
    assert [(e.group, e.index) for e in panel.entries] == [(g, i) for g in bases for i in range(TOP)]
    assert panel.list.count() == len(panel.entries) and "random" in panel.note.text()  # the demo says so
    assert not panel.add_button.isEnabled() or w.state.document is not None
    w.state.set_document(seed_document)
    panel.list.setCurrentRow(TOP + 1)  # the middle group's second direction
    assert panel.add_button.isEnabled()
    panel.add_button.click()
    doc = w.state.document
    assert doc is not None and len(doc.layers) == 1
    layer = doc.layers[0]
    p = layer.params
    assert isinstance(p, SliderParams) and (p.group, p.index) == ("middle", 1)
    assert p.rows == bases["middle"].rows and layer.alpha == SliderParams.default_alpha
    np.testing.assert_allclose(p.direction, bases["middle"].vectors[1], atol=1e-6)
    assert layer.name == "middle slider 2"
    qtbot.waitUntil(lambda: w.canvas.has_image(), timeout=30_000)
    w.state.set_current_layer(layer.id)
    props = w.panels["propertiesDock"]
    assert "keep" in props.fields  # like any layer: keep constraints and the leak meter
    props.fields["keep"].setText("age")
    props.fields["keep"].editingFinished.emit()
    assert w.state.document.layers[0].params.keep == ("age",)
    qtbot.waitUntil(lambda: props.leak is not None and props.leak.report is not None, timeout=60_000)
    w.state.undo_stack.undo()
    w.state.undo_stack.undo()
    assert len(w.state.document.layers) == 0


def test_naming_with_clip_names_and_keeps_the_names(qtbot: Any, make_window: Any, engine: Any) -> None:
    vocab = sefa.load_vocabulary()
    G = generator_of(engine)
    sefa.names_path(G, str(engine.models.clip.model_hash), vocab).unlink(missing_ok=True)
    w = make_window(engine)
    panel = _panel(w)
    qtbot.waitUntil(lambda: bool(panel.entries) and panel.name_button.isEnabled(), timeout=30_000)
    assert all(e.score is None for e in panel.entries)
    panel.name_button.click()
    qtbot.waitUntil(lambda: all(e.score is not None for e in panel.entries), timeout=120_000)
    saved = sefa.load_names(sefa.names_path(G, str(engine.models.clip.model_hash), vocab))
    assert [(d.group, d.index, d.name, d.sign) for d in saved] == \
        [(e.group, e.index, e.name, e.sign) for e in panel.entries]
    assert all(e.name == sefa.UNNAMED or e.name in vocab.prompts for e in panel.entries)
    # A second window finds the names without asking CLIP again.
    other = _panel(make_window(engine))
    qtbot.waitUntil(lambda: bool(other.entries), timeout=30_000)
    assert [e.name for e in other.entries] == [e.name for e in panel.entries]
