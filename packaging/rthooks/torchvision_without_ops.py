"""Runtime hook of the Linux CPU bundle: let torchvision import without its compiled ops.

PyPI's Linux torchvision wheels are built against CUDA torch; their `_C` extension cannot
load next to the CPU torch that bundle carries, so the spec leaves it out. torchvision
copes with a missing `_C` everywhere but one place: at import it registers fake kernels
for `torchvision::nms` and `torchvision::qnms` without checking that the ops exist, and
fails. Declaring the two schemas (with no kernels) first lets that registration pass.
The editor uses torchvision only through open_clip's image transforms; nms in this
bundle raises "no kernel", which is the honest answer.

torch is heavy and the window must appear before it loads, so nothing happens until the
first `import torchvision`.
"""

import sys
from pathlib import Path


class _DeclareTorchvisionOps:
    """A meta-path finder that acts once, just before torchvision is imported, then steps aside."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 (importlib protocol)
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch.library

        for op in ("nms", "qnms"):
            torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        return None  # the normal finders import torchvision itself


_bundle = getattr(sys, "_MEIPASS", None)
# `_C.so` up to torchvision 0.28, `_C_stable.so` from 0.29.
if _bundle is not None and not any((Path(_bundle) / "torchvision").glob("_C*")):
    sys.meta_path.insert(0, _DeclareTorchvisionOps())
