"""A project's fine-tuned generator (pivotal tuning) is what the renderer draws with."""

from __future__ import annotations

import numpy as np
import pytest

from styleclip_desktop.document import Document
from styleclip_desktop.errors import UserError
from styleclip_desktop.render.pipeline import ModelSet, Renderer


def test_weight_delta_changes_the_render_and_a_mismatch_is_refused(tiny_G) -> None:  # type: ignore[no-untyped-def]
    r = Renderer(ModelSet(tiny_G))
    w = tiny_G.broadcast_w(tiny_G.sample_w(1, seed=2))[0].numpy()
    plain = r.render(Document(w))
    bias = dict(tiny_G.named_parameters())["torgbs.3.bias"]
    tuned_doc = Document(w, generator_delta={"torgbs.3.bias": np.full(tuple(bias.shape), 0.5, np.float32)})
    tuned = r.render(tuned_doc)
    assert np.abs(tuned.astype(int) - plain.astype(int)).mean() > 10  # +0.5 on the last toRGB bias ≈ +64 levels
    assert np.array_equal(r.render(Document(w)), plain)  # the shared generator itself is untouched
    with pytest.raises(UserError, match="does not fit"):
        r.render(Document(w, generator_delta={"no.such.weight": np.zeros(3, np.float32)}))
