"""File > Export Animation… (after Krita's Render Animation): the document's timeline as an
MP4 video, a GIF or an animated WebP, through the same export the command line's `animate`
runs, with the frame rate, length, size, loop and quality the user picks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QLabel, QSpinBox

from styleclip_desktop.ui import exporting as ex
from styleclip_desktop.ui.export_dialogs import ExportDialog, row_of


def crf_for_quality(quality: int) -> int:
    """H.264's CRF for a 1..100 quality: 90 gives CRF 18 (visually lossless to most eyes),
    100 gives 0 and 1 gives 51, the worst."""
    if quality >= 90:
        return round(18 * (100 - quality) / 10)
    return round(18 + (90 - quality) * 33 / 89)


class ExportAnimationDialog(ExportDialog):
    TITLE = "Export Animation"
    FORMATS = (("MP4 video (H.264)", (".mp4",)), ("GIF", (".gif",)), ("WebP", (".webp",)))
    FILTER = ex.ANIMATION_FILTER
    ENDING = "-animation"

    def add_options(self) -> None:
        self.size_box.setRange(0, 8192)
        self.size_box.setValue(512)
        self.fps_box = QSpinBox()
        self.fps_box.setRange(1, 60)
        self.fps_box.setValue(60)
        self.fps_box.setSuffix(" fps")
        self.timeline_length = QCheckBox("The timeline's")
        self.timeline_length.setChecked(True)
        self.seconds_box = QDoubleSpinBox()
        self.seconds_box.setRange(0.1, 3600.0)
        self.seconds_box.setDecimals(2)
        self.seconds_box.setSingleStep(0.5)
        self.seconds_box.setSuffix(" s")
        length = row_of(self.seconds_box, self.timeline_length)
        self.frames_label = QLabel()
        self.morph_box = QCheckBox("Sweep every visible layer in from 0 (morph)")
        self.morph_box.setToolTip("Each layer rises from α 0 to its own α over the whole animation, "
                                  "instead of following the timeline's keyframes")
        self.loop_box = QCheckBox("Loop forever")
        self.loop_box.setChecked(True)
        self.quality_box.setValue(90)
        self.form.addRow("&Picture:", self.picture_box)
        self.form.addRow("&Size:", self.size_box)
        self.form.addRow("F&rame rate:", self.fps_box)
        self.form.addRow("&Duration:", length)
        self.form.addRow("", self.frames_label)
        self.form.addRow("", self.morph_box)
        self.form.addRow("", self.loop_box)
        self.form.addRow("&Quality:", self.quality_box)
        self.timeline_length.toggled.connect(self._update_length)
        self.fps_box.valueChanged.connect(self._update_length)
        self.seconds_box.valueChanged.connect(self._update_length)

    def reset_options(self, doc: Any) -> None:
        super().reset_options(doc)
        if doc is not None:
            self.seconds_box.setValue(float(doc.timeline.duration))
            self.morph_box.setChecked(not doc.timeline.tracks)
        self._update_length()

    def format_changed(self) -> None:
        fmt = self.suffixes[0]
        self.loop_box.setEnabled(fmt != ".mp4")
        self.loop_box.setToolTip("Video players decide for themselves whether an MP4 loops" if fmt == ".mp4" else "")
        self.quality_box.setEnabled(fmt != ".gif")
        self.quality_box.setToolTip(
            "GIF has 256 colours and no quality setting" if fmt == ".gif" else
            "Higher keeps more detail in a larger file" + (" (90 is H.264's CRF 18)" if fmt == ".mp4" else ""))
        self._update_length()

    def _seconds(self) -> float:
        doc = self.state.document
        if self.timeline_length.isChecked() and doc is not None:
            return float(doc.timeline.duration)
        return float(self.seconds_box.value())

    def _update_length(self) -> None:
        from styleclip_desktop.document.timeline import frame_count

        use_timeline = self.timeline_length.isChecked()
        self.seconds_box.setEnabled(not use_timeline)
        doc = self.state.document
        if use_timeline and doc is not None:
            self.seconds_box.blockSignals(True)
            self.seconds_box.setValue(float(doc.timeline.duration))
            self.seconds_box.blockSignals(False)
        fps = float(self.fps_box.value())
        if self.suffixes and self.suffixes[0] == ".gif":
            from styleclip_desktop.export.animation import GIF_MAX_FPS

            fps = min(fps, GIF_MAX_FPS)
        n = frame_count(self._seconds(), fps)
        self.frames_label.setText(f"{n} frame{'s' if n != 1 else ''}")

    def options(self) -> Any:
        from styleclip_desktop.export.animation import AnimationOptions

        quality = self.quality_box.value()
        return AnimationOptions(fps=float(self.fps_box.value()),
                                seconds=None if self.timeline_length.isChecked() else self._seconds(),
                                size=self.size_box.value() or None, crop=self.crop, morph=self.morph_box.isChecked(),
                                crf=crf_for_quality(quality), quality=quality, loop=self.loop_box.isChecked())

    def make_job(self, path: Path, options: Any) -> Any:
        from styleclip_desktop.export.animation import animation_format

        animation_format(path)
        return ex.animation_job(self.state, path, options)

    def finished_text(self, path: Path, result: Any) -> str:
        text = (f"Exported {result.frames} frames at {result.fps:g} fps, {result.width}×{result.height}, "
                f"to {path}.")
        for note in result.notes:
            text += f" Note: {note}."
        return text
