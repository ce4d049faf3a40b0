"""Progress of long command-line jobs, on stderr (stdout stays for results and JSON).

One helper serves every command. A job reports `(done, total)` to a callable from `bar()`:

* on a terminal, a tqdm bar with its rate and time left; it appears only once the job
  has run for a second, so quick commands print nothing;
* when stderr is not a terminal (a log file, a pipe, CI), plain lines such as
  ``mapper train: training mapper 200/2000 steps (10%, about 1m30s left)``: once the stage
  has run for a second, one per tenth of the work and one at the end; a stage over within
  its first second prints nothing, so a quick step (hashing a small file before an
  error) never stands between the user and a one-line error;
* with ``--quiet``, one line when each stage starts and nothing more.

Work that cannot be counted (loading models, one render) runs inside `stage()`: on a
terminal it shows its name and the time so far once it has taken a second; elsewhere it
prints nothing, so logs hold the counted stages and an error stays one line.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

BAR_DELAY_S = 1.0  # a terminal bar appears only for jobs that last longer than this
LINE_STEPS = 10  # plain lines per stage: one per tenth of the work


@dataclass
class _Settings:
    quiet: bool = False
    label: str = ""  # the command, e.g. "mapper train"; prefixes every plain line
    stream: TextIO | None = None  # None: whatever sys.stderr is when a line is written
    tty: bool | None = None  # None: ask the stream
    delay: float = BAR_DELAY_S
    mininterval: float = 0.1  # seconds between two redraws of a bar


_settings = _Settings()
_active: list[Any] = []  # tqdm bars on screen, so notes can be written above them
_lock = threading.Lock()


def configure(*, quiet: bool = False, label: str = "", stream: TextIO | None = None, tty: bool | None = None,
              delay: float | None = None, mininterval: float = 0.1) -> None:
    """How this process reports progress; the CLI calls it once per command.

    `delay`: seconds before a terminal bar appears (default `BAR_DELAY_S`)."""
    global _settings
    _settings = _Settings(quiet=quiet, label=label, stream=stream, tty=tty,
                          delay=BAR_DELAY_S if delay is None else delay, mininterval=mininterval)
    with _lock:
        stale = list(_active)
        _active.clear()
    for old in stale:  # bars a failed or cancelled job left open
        old.close()


def _stream() -> TextIO:
    return _settings.stream if _settings.stream is not None else sys.stderr


def _is_tty(stream: TextIO) -> bool:
    if _settings.tty is not None:
        return _settings.tty
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    try:  # a terminal of no width (some containers, until resized) shows no bar: write lines
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return True


def note(msg: str) -> None:
    """A message on stderr that does not tear a progress bar on screen."""
    stream = _stream()
    if _active or _spinner is not None:
        from tqdm import tqdm

        tqdm.write(msg, file=stream)
    else:
        print(msg, file=stream, flush=True)


def duration(seconds: float) -> str:
    """<1s, 12s, 4m05s, 2h10m: how long, at a glance."""
    if seconds < 1:
        return "<1s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _amount(n: float, unit: str, scale: bool) -> str:
    if not scale:
        return f"{int(n):,}"
    for prefix in ("", "K", "M", "G"):
        if abs(n) < 1000 or prefix == "G":
            return f"{n:.0f} {prefix}{unit}" if not prefix else f"{n:.1f} {prefix}{unit}"
        n /= 1000
    return f"{n:.1f} T{unit}"


class Progress:
    """A `(done, total)` callback for one stage of a job; extra arguments (a loss, a message) are ignored.

    It finishes by itself when `done` reaches `total`; `close()` ends it early (an error, a
    cancel, or a stage whose total was unknown)."""

    def __init__(self, desc: str, unit: str = "it", unit_scale: bool = False, total: int | None = None) -> None:
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self.total = total
        self.stream = _stream()
        self.quiet = _settings.quiet
        self.mode = "quiet" if self.quiet else ("bar" if _is_tty(self.stream) else "lines")
        self.label = _settings.label
        self._delay = _settings.delay
        self._mininterval = _settings.mininterval
        self._bar: Any = None
        self._started = False
        self._closed = False
        self._t0 = 0.0
        self._n0 = 0
        self._last_step = -1
        self.done = 0

    # -- the callback ------------------------------------------------------------------

    def __call__(self, done: int, total: int | None = None, *_: Any) -> None:
        if self._closed:
            return
        if total is not None and total > 0:
            self.total = int(total)
        self.done = int(done)
        if not self._started:
            self._start()
        if self.mode == "bar":
            self._update_bar()
        elif self.mode == "lines":
            self._maybe_line()
        if self.total and self.done >= self.total:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            with _lock:
                if self._bar in _active:
                    _active.remove(self._bar)
            self._bar.close()
        elif self.mode == "lines" and self._started and not self.total and self._lasted():
            self._line(final=True)  # a stage of unknown size says when it ended

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the three ways of showing it -------------------------------------------------

    def _start(self) -> None:
        self._started = True
        self._t0 = time.monotonic()
        self._n0 = self.done
        if self.mode == "bar":
            from tqdm import tqdm

            if _spinner is not None:
                _spinner.pause()  # the counted bar says more than the stage's clock

            self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, unit_scale=self.unit_scale,
                             unit_divisor=1024 if self.unit == "B" else 1000, file=self.stream, leave=False,
                             delay=self._delay, mininterval=self._mininterval, dynamic_ncols=True,
                             initial=self.done)
            with _lock:
                _active.append(self._bar)
        elif self.mode == "quiet":
            size = f", {_amount(self.total, self.unit, self.unit_scale)}{self._unit_word()}" if self.total else ""
            self._write(f"{self.desc}{size}")

    def _lasted(self) -> bool:
        return time.monotonic() - self._t0 >= self._delay

    def _update_bar(self) -> None:
        bar = self._bar
        if self.total is not None and bar.total != self.total:
            bar.total = self.total
        step = self.done - bar.n
        if step > 0:
            bar.update(step)
        elif step < 0:  # a job that went back (a resumed count): show where it is
            bar.n = self.done
            bar.refresh()

    def _maybe_line(self) -> None:
        if not self.total:  # of unknown size: a line once it has lasted, and one at its end
            if self._last_step < 0 and self._lasted():
                self._line()
            return
        tenth = min(LINE_STEPS, self.done * LINE_STEPS // self.total)
        if tenth > self._last_step and self._lasted():
            self._line()

    def _line(self, final: bool = False) -> None:
        total = self.total
        text = f"{self.desc} {_amount(self.done, self.unit, self.unit_scale)}"
        if total:
            text += f"/{_amount(total, self.unit, self.unit_scale)}"
        text += self._unit_word()
        elapsed = time.monotonic() - self._t0
        if total:
            pct = min(100, self.done * 100 // total)
            self._last_step = min(LINE_STEPS, self.done * LINE_STEPS // total)
            if self.done >= total:
                text += f" (100%, {duration(elapsed)})"
            elif self.done > self._n0 and elapsed > 0:
                left = elapsed / (self.done - self._n0) * (total - self.done)
                text += f" ({pct}%, about {duration(left)} left)" if left >= 1 else f" ({pct}%, a moment left)"
            else:
                text += f" ({pct}%)"
        else:
            self._last_step = 0
            if final:
                text += f" ({duration(elapsed)})"
        self._write(text)

    def _unit_word(self) -> str:
        if self.unit_scale or self.unit == "it":
            return ""
        plural = len(self.unit) > 2 and not self.unit.endswith("s")
        return f" {self.unit}s" if plural else f" {self.unit}"

    def _write(self, text: str) -> None:
        prefix = f"{self.label}: " if self.label else ""
        print(prefix + text, file=self.stream, flush=True)


class _Spinner(threading.Thread):
    """A terminal line with a stage's name and its elapsed time, redrawn until the stage ends."""

    def __init__(self, desc: str, stream: TextIO, delay: float) -> None:
        super().__init__(name="progress-stage", daemon=True)
        self.desc, self.stream, self.delay = desc, stream, delay
        self.stopped = threading.Event()
        self.drawn = threading.Event()  # set once the line has been shown
        self._paused = False
        self._bar: Any = None
        self._guard = threading.Lock()

    def run(self) -> None:
        if self.stopped.wait(self.delay):
            return
        from tqdm import tqdm

        with self._guard:
            if self._paused or self.stopped.is_set():
                return
            self._bar = tqdm(total=None, desc=self.desc, bar_format="{desc}… {elapsed}", file=self.stream,
                             leave=False, mininterval=0)
            self._bar.refresh()
        self.drawn.set()
        while not self.stopped.wait(0.5):
            with self._guard:
                if self._bar is not None:
                    self._bar.refresh()

    def pause(self) -> None:
        with self._guard:
            self._paused = True
            self._close_bar()

    def stop(self) -> None:
        self.stopped.set()
        with self._guard:
            self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


_spinner: _Spinner | None = None


@contextlib.contextmanager
def stage(desc: str) -> Iterator[_Spinner | None]:
    """Work of unknown length: on a terminal its name and clock after a second (see the module)."""
    global _spinner
    stream = _stream()
    if _settings.quiet or _spinner is not None or not _is_tty(stream):
        yield None
        return
    spinner = _Spinner(desc, stream, _settings.delay)
    _spinner = spinner
    spinner.start()
    try:
        yield spinner
    finally:
        spinner.stop()
        _spinner = None


def bar(desc: str, unit: str = "it", *, unit_scale: bool = False, total: int | None = None) -> Progress:
    """The progress callback for one stage of a command (see the module's docstring)."""
    return Progress(desc, unit, unit_scale=unit_scale, total=total)


def label_for(args: Any) -> str:
    """The command a line speaks for: 'mapper train', 'directions precompute', 'bench'."""
    command = getattr(args, "command", None) or ""
    for attr in ("mapper_command", "directions_command", "models_command"):
        action = getattr(args, attr, None)
        if action:
            return f"{command} {action}"
    return command
