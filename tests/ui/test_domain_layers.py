"""Domain layers in the editor: adding one from a file, training one in the Train Domain
dialog (progress, preview, cancel keeps the best, add as layer), saving and reopening a
project that holds one, and the Properties panel's domain rows, through real widgets
with the real engine on the synthetic demo models."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PySide6.QtWidgets import QCheckBox

from styleclip_desktop.document import Document, DomainParams, GlobalDirectionParams, actions
from styleclip_desktop.methods import domain_file, nada
from styleclip_desktop.ui.domain_dialog import DomainDialog, duration_text, preview_strip, progress_text
from styleclip_desktop.ui.engines import generator_of
from styleclip_desktop.ui.panels import domain_properties
from styleclip_desktop.ui.panels.domain_actions import base_identity
from styleclip_desktop.ui.panels.properties_panel import PropertiesPanel

TIMEOUT = 60_000


def settle(qtbot: Any, state: Any) -> None:
    worker = state.engine.worker
    qtbot.waitUntil(lambda: worker.pending() == 0 and worker.current is None and state.tasks.current() is None,
                    timeout=TIMEOUT)
    qtbot.wait(20)


def open_document(qtbot: Any, window: Any, doc: Document) -> None:
    window.projects.replace_document(doc)
    settle(qtbot, window.state)


def a_domain(engine: Any, scale: float = 0.01) -> DomainParams:
    """A small, format-faithful domain for the demo generator: a delta on one trained row."""
    G = generator_of(engine)
    name, p = next(iter(nada.row_parameters(G, [G.num_ws - 1]).items()))
    rng = np.random.default_rng(0)
    delta = {name: (rng.standard_normal(tuple(p.shape)) * scale).astype(np.float16)}
    return DomainParams(target="a pencil sketch", delta=delta, rows=(G.num_ws - 1,), base=base_identity(engine),
                        steps=3)


def domain_file_for(engine: Any, tmp_path: Path) -> Path:
    return domain_file.save_domain(tmp_path / "sketch.domain", a_domain(engine))


def domain_layers(doc: Document) -> list[Any]:
    return [layer for layer in doc.layers if isinstance(layer.params, DomainParams)]


def errors_of(state: Any) -> list[str]:
    seen: list[str] = []
    state.error.connect(seen.append)
    return seen


# -- from a file -----------------------------------------------------------------------------


def test_layer_menu_has_the_domain_entries(make_window: Any, engine: Any, seed_document: Document,
                                            qtbot: Any) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&Layer")
    texts = [a.text() for a in menu.actions()]
    assert "Add Domain Layer from &File…" in texts and "&Train Domain…" in texts
    assert w.domain_actions.from_file.isEnabled() and w.domain_actions.train.isEnabled()


def test_a_domain_file_adds_one_layer_in_one_undo_step(make_window: Any, engine: Any, seed_document: Document,
                                                        qtbot: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    path = domain_file_for(engine, tmp_path)
    from styleclip_desktop.ui import dialogs

    monkeypatch.setattr(dialogs, "open_path", lambda *a, **k: path)  # the user picks the file
    doc, stack = w.state.document, w.state.undo_stack
    count, index = len(doc.layers), stack.index()
    with qtbot.waitSignal(w.domain_actions.added, timeout=TIMEOUT) as added:
        w.domain_actions.from_file.trigger()
    assert len(doc.layers) == count + 1 and stack.index() == index + 1
    layer = doc.layers.get(added.args[0])
    assert isinstance(layer.params, DomainParams) and layer.params.target == "a pencil sketch"
    assert layer.params.delta_key == a_domain(engine).delta_key
    assert w.state.current_layer_id == layer.id
    assert w.panels["layersDock"].rows[layer.id].badge.text() == domain_properties.BADGE
    settle(qtbot, w.state)
    stack.undo()
    assert len(doc.layers) == count and not domain_layers(doc)


@pytest.mark.parametrize("content", [b"not a domain", b""])
def test_a_bad_domain_file_is_one_sentence(make_window: Any, engine: Any, seed_document: Document, qtbot: Any,
                                          tmp_path: Path, content: bytes) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    seen = errors_of(w.state)
    bad = tmp_path / "broken.domain"
    bad.write_bytes(content)
    count = len(w.state.document.layers)
    w.domain_actions.add_from_file(bad)
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT)
    assert len(seen) == 1 and "\n" not in seen[0] and "Traceback" not in seen[0]
    assert "broken.domain" in seen[0] or "domain" in seen[0].lower()
    assert len(w.state.document.layers) == count


def test_a_domain_for_another_generator_is_refused(make_window: Any, engine: Any, seed_document: Document,
                                                   qtbot: Any, tmp_path: Path) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    seen = errors_of(w.state)
    params = a_domain(engine).with_changes(base="0" * 64)
    path = domain_file.save_domain(tmp_path / "other.domain", params)
    w.domain_actions.add_from_file(path)
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT)
    assert "another generator" in seen[0] and "\n" not in seen[0]
    assert not domain_layers(w.state.document)


# -- the project keeps it ----------------------------------------------------------------------


def test_a_domain_layer_survives_save_and_reopen(make_window: Any, engine: Any, seed_document: Document,
                                                 qtbot: Any, tmp_path: Path) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    params = a_domain(engine)
    w.state.push(actions.add_layer(seed_document, params, alpha=0.7))
    w.state.push(actions.add_layer(seed_document, GlobalDirectionParams("a face with grey hair", beta=0.1),
                                   alpha=2.0))
    settle(qtbot, w.state)
    project = tmp_path / "domain.scproj"
    assert w.projects._save_to(project)
    w2 = make_window(engine)
    assert w2.projects.open_project(project)
    doc = w2.state.document
    assert [layer.kind for layer in doc.layers] == ["domain", "global_direction"]
    reopened = doc.layers[0]
    assert reopened.alpha == pytest.approx(0.7)
    assert reopened.params == params and reopened.params.delta_key == params.delta_key
    settle(qtbot, w2.state)


# -- properties ----------------------------------------------------------------------------------


def test_properties_flag_extrapolation_and_paste_back_is_undoable(make_window: Any, engine: Any,
                                                                   seed_document: Document, qtbot: Any) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    command = actions.add_layer(seed_document, a_domain(engine))
    w.state.push(command)
    layer_id = command.layer.id
    w.state.set_current_layer(layer_id)
    panel: PropertiesPanel = w.panels["propertiesDock"]
    panel.sync()
    assert panel.domain is not None and panel.alpha is not None
    assert panel.alpha.slider.maximum() == panel.alpha.slider.minimum() + 20  # 0..1 on the slider
    assert panel.domain.flag.isHidden()
    texts = [lbl.text() for lbl in panel.layer_box.findChildren(type(panel.domain.flag))]
    assert "photo → a pencil sketch" in texts and "trained in this app" in texts
    assert any(t.endswith(" MB") for t in texts)

    panel.alpha.spin.setValue(1.5)  # the user types past 1
    layer = seed_document.layers.get(layer_id)
    assert layer.alpha == pytest.approx(1.5)
    assert not panel.domain.flag.isHidden()
    panel.alpha.spin.setValue(0.5)
    assert panel.domain.flag.isHidden()

    box = panel.fields["paste_back"]
    assert isinstance(box, QCheckBox) and not box.isChecked()
    index = w.state.undo_stack.index()
    box.setChecked(True)
    assert seed_document.layers.get(layer_id).params.paste_back is True
    assert w.state.undo_stack.index() == index + 1
    w.state.undo_stack.undo()
    assert seed_document.layers.get(layer_id).params.paste_back is False
    panel.sync()
    assert not box.isChecked()
    settle(qtbot, w.state)


# -- training ----------------------------------------------------------------------------------


def test_training_shows_progress_and_a_preview_then_adds_a_layer(make_window: Any, engine: Any,
                                                                 seed_document: Document, qtbot: Any,
                                                                 tmp_path: Path) -> None:
    """The real training on the 32 px demo models, two steps."""
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    dialog: DomainDialog = w.domain_actions.open_trainer()
    assert dialog.source.text() == "photo" and dialog.include_face.isChecked()
    assert not dialog.train_button.isEnabled()  # no target yet
    dialog.target.setText("a pencil sketch")
    dialog.iterations.setValue(2)
    frames: list[int] = []
    with qtbot.waitSignal(dialog.trained, timeout=TIMEOUT):
        dialog.train_button.click()
        assert dialog.running() and dialog.cancel_button.isEnabled() and not dialog.add_button.isEnabled()
        qtbot.waitUntil(lambda: dialog.preview.pixmap() is not None and not dialog.preview.pixmap().isNull(),
                        timeout=TIMEOUT)
        frames.append(dialog.preview.pixmap().width())
    assert frames and frames[0] > 0
    assert dialog.progress.maximum() == 2 and dialog.progress.value() == 2
    assert dialog.status.text().startswith("Finished 2 steps")
    params = dialog.result_params
    assert isinstance(params, DomainParams) and params.target == "a pencil sketch" and params.steps == 2
    assert params.base == base_identity(engine)

    written = dialog.save_result(tmp_path / "sketch.domain")
    assert written is not None and written.exists()
    assert domain_file.read_domain(written) == params

    count, index = len(seed_document.layers), w.state.undo_stack.index()
    with qtbot.waitSignal(w.domain_actions.added, timeout=TIMEOUT):
        dialog.add_button.click()
    assert len(seed_document.layers) == count + 1 and w.state.undo_stack.index() == index + 1
    assert seed_document.layers[count].params == params
    dialog.close()
    settle(qtbot, w.state)


def test_cancel_keeps_the_best_so_far_and_says_so(make_window: Any, engine: Any, seed_document: Document,
                                                  qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in training that runs until it is cancelled, as the real one does."""
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    best = a_domain(engine)
    asked: dict[str, Any] = {}
    started = threading.Event()

    def fake_train(G: Any, clip: Any, cfg: Any, *, extra_ws: Any = None, progress: Any = None, cancel: Any = None,
                   preview: Any = None, **_kw: Any) -> nada.NadaResult:
        asked["cfg"], asked["extra"] = cfg, extra_ws
        progress(1, cfg.iterations, 0.75)
        preview(1, np.zeros((2, 32, 32, 3), np.uint8))
        started.set()
        while not cancel():
            threading.Event().wait(0.01)
        return nada.NadaResult(delta=dict(best.delta), rows=best.rows, steps_done=1, losses=[0.75], best_step=1,
                               cancelled=True)

    monkeypatch.setattr(nada, "train_domain", fake_train)
    dialog: DomainDialog = w.domain_actions.open_trainer()
    dialog.target.setText("a werewolf")
    dialog.iterations.setValue(40)
    dialog.seed.setValue(7)
    dialog.train_button.click()
    qtbot.waitUntil(lambda: dialog.progress.value() == 1 and dialog.preview.pixmap() is not None, timeout=TIMEOUT)
    assert "Step 1 of 40" in dialog.status.text() and "loss 0.7500" in dialog.status.text()
    assert dialog.preview.pixmap().width() == 2 * dialog.preview.pixmap().height()  # two frames side by side
    with qtbot.waitSignal(dialog.trained, timeout=TIMEOUT):
        dialog.cancel_button.click()
    assert "Cancelled after 1 step:" in dialog.status.text() and "best" in dialog.status.text()
    assert asked["cfg"].target == "a werewolf" and asked["cfg"].iterations == 40 and asked["cfg"].seed == 7
    assert asked["cfg"].source == "photo"
    assert np.array_equal(asked["extra"], seed_document.latent)  # the photo's face was included
    assert dialog.add_button.isEnabled() and dialog.save_button.isEnabled()
    layer_id = dialog.add_result()
    assert layer_id and seed_document.layers.get(layer_id).params.delta_key == best.delta_key
    dialog.close()
    settle(qtbot, w.state)


def test_a_training_failure_is_one_line_in_the_dialog(make_window: Any, engine: Any, seed_document: Document,
                                                      qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("out of memory\nat line 3 of somewhere")

    monkeypatch.setattr(nada, "train_domain", broken)
    dialog: DomainDialog = w.domain_actions.open_trainer()
    dialog.target.setText("a pencil sketch")
    dialog.train_button.click()
    qtbot.waitUntil(lambda: not dialog.running(), timeout=TIMEOUT)
    assert dialog.status.text() == "Training failed: out of memory"
    assert dialog.result_params is None and not dialog.add_button.isEnabled()
    dialog.close()


def test_the_dialog_says_plainly_that_a_processor_is_slow_at_full_size(make_window: Any, engine: Any,
                                                                        seed_document: Document, qtbot: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from styleclip_desktop.ui import domain_dialog

    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    full_size = SimpleNamespace(config=SimpleNamespace(resolution=1024), parameters=lambda: iter([torch.zeros(1)]))
    with monkeypatch.context() as patched:
        patched.setattr(domain_dialog, "generator_of", lambda _engine: full_size)
        dialog = DomainDialog(w.state, w.settings, w)
    qtbot.addWidget(dialog)
    assert dialog.iterations.value() < nada.NadaConfig("x").iterations
    assert "5 minutes at 1024 px" in dialog.speed_note.text() and "GPU" in dialog.speed_note.text()
    small = DomainDialog(w.state, w.settings, w)  # the 32 px demo generator
    qtbot.addWidget(small)
    assert small.iterations.value() == nada.NadaConfig("x").iterations  # the published 301


def test_progress_words() -> None:
    assert duration_text(12) == "12 s" and duration_text(95) == "1 min 35 s" and duration_text(3725) == "1 h 2 min"
    text = progress_text(1, 10, 0.5, 300.0)
    assert text.startswith("Step 1 of 10 · loss 0.5000") and "about 45 min 0 s left" in text
    assert "one step takes 5 min 0 s here" in text
    assert progress_text(10, 10, 0.25, 10.0) == "Step 10 of 10 · loss 0.2500"
    strip = preview_strip(np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3))
    assert strip.shape == (4, 8, 3)
