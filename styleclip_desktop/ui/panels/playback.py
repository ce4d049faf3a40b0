"""Where the playhead goes next: play once, loop, or ping-pong (there and back).

Plain arithmetic on frame indices so the panel can advance by however many frames of
wall-clock time have passed since the last tick: when rendering falls behind, frames
are skipped rather than queued, and the animation keeps its real speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    frame: int
    direction: int  # +1 forward, -1 backward (ping-pong's way back)
    stopped: bool  # reached the end of a play-once or a single there-and-back


def advance(frame: int, direction: int, steps: int, count: int, *, loop: bool, ping_pong: bool) -> Step:
    """Move `steps` frames from `frame` through an animation of `count` frames."""
    last = max(0, count - 1)
    frame = max(0, min(frame, last))
    if steps <= 0:
        return Step(frame, direction, False)
    if last == 0:  # a one-frame animation: nowhere to go, and a bounce would have no period
        return Step(0, 1, not loop)
    if not ping_pong:
        target = frame + steps
        if loop:
            return Step(target % (last + 1), 1, False)
        return Step(min(target, last), 1, target >= last)
    # Unfold the bounce onto a line: 0..last forward, then last..2*last coming back.
    period = 2 * last
    position = frame if direction >= 0 else period - frame
    position += steps
    if not loop and position >= period:
        return Step(0, 1, True)
    position %= period
    if position < last:
        return Step(position, 1, False)
    return Step(period - position, -1, False)


def frames_due(elapsed_s: float, fps: float) -> int:
    """Whole frames of playback in `elapsed_s` seconds (robust to float noise at frame edges)."""
    return max(0, math.floor(elapsed_s * fps + 1e-6))
