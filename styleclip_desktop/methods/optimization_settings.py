"""The settings of latent optimization and their published defaults, in one table.

Plain Python (no torch), so the document and the interface can show and store them without
loading the networks. `methods.optimization` takes its defaults from here; so do the layer
parameters, the command line and the optimization settings in the editor.

Modes, each the published procedure of one use:

- ``edit``: change a face freely. The published optimization script: 300 steps, lr 0.1,
  lambda_L2 0.008, lambda_ID 0 (its identity term is off unless asked for).
- ``edit-identity``: change a face but keep who it is (needs ArcFace). The published
  optimization notebook: 40 steps, lr 0.1, lambda_L2 0.008, lambda_ID 0.005.
- ``text-to-face``: a face from a prompt alone. The script's free generation: 300 steps,
  lr 0.1 and the CLIP loss only (it has no start to stay close to and no identity to keep).
"""

from __future__ import annotations

from dataclasses import dataclass

# How CLIP sees a generated image during optimization and mapper training.
# PUBLISHED (the default): the [-1, 1] image box-filtered to CLIP's input size (nearest
# upsampling x7, then average pooling, at 1024 px), without CLIP's mean/std normalisation.
# The published lambda values and step counts were tuned with this input, so a prompt and
# settings from the paper only give the paper's result through it.
# EXACT: CLIP's own preprocessing (bicubic resize, centre crop, mean/std), the input CLIP was
# trained on; the loss then measures the similarity CLIP was trained to measure, but the
# published weights no longer mean what they did.
CLIP_INPUT_PUBLISHED = "published"
CLIP_INPUT_EXACT = "exact"
CLIP_INPUTS = (CLIP_INPUT_PUBLISHED, CLIP_INPUT_EXACT)
DEFAULT_CLIP_INPUT = CLIP_INPUT_PUBLISHED

# Which latent an optimization returns. LAST (the default, as published): the latent after
# the final step. BEST: the step with the lowest CLIP loss, which may be the start itself
# (no edit at all) when no step improved on it.
RESULT_LAST = "last"
RESULT_BEST = "best"
RESULTS = (RESULT_LAST, RESULT_BEST)
DEFAULT_RESULT = RESULT_LAST

# Settings a project file made before these choices existed was computed with: its stored
# offsets came from CLIP's own preprocessing and the lowest-total-loss step.
LEGACY_CLIP_INPUT = CLIP_INPUT_EXACT
LEGACY_RESULT = RESULT_BEST


@dataclass(frozen=True)
class OptimizationPreset:
    """The published defaults of one mode."""

    mode: str
    label: str
    steps: int
    lr: float
    lambda_l2: float
    lambda_id: float

    def summary(self) -> str:
        """One line for people: '300 steps, lr 0.1, λ L2 0.008, λ ID 0'."""
        return (f"{self.steps} steps, lr {self.lr:g}, λ L2 {self.lambda_l2:g}, λ ID {self.lambda_id:g}")


MODE_EDIT = "edit"
MODE_EDIT_IDENTITY = "edit-identity"
MODE_TEXT_TO_FACE = "text-to-face"

PRESETS: dict[str, OptimizationPreset] = {
    p.mode: p for p in (
        OptimizationPreset(MODE_EDIT, "Edit", 300, 0.1, 0.008, 0.0),
        OptimizationPreset(MODE_EDIT_IDENTITY, "Edit, keeping identity (ArcFace)", 40, 0.1, 0.008, 0.005),
        OptimizationPreset(MODE_TEXT_TO_FACE, "Text to face", 300, 0.1, 0.0, 0.0),
    )
}
EDIT = PRESETS[MODE_EDIT]
EDIT_IDENTITY = PRESETS[MODE_EDIT_IDENTITY]
TEXT_TO_FACE = PRESETS[MODE_TEXT_TO_FACE]
MODES = tuple(PRESETS)


def preset(mode: str) -> OptimizationPreset:
    try:
        return PRESETS[mode]
    except KeyError:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}") from None


def defaults_text() -> str:
    """The published defaults of every mode, one per line, for help texts and the editor."""
    return "\n".join(f"{p.label}: {p.summary()}" for p in PRESETS.values())

# Kept attributes (`keep`): each one's |change| of CLIP similarity is priced like the target's.
DEFAULT_LAMBDA_KEEP = 1.0
