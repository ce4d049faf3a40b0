"""One answer to "what does each feature need, and is it here?".

The CLI's `models list`, the editor's start-up checks and the GUI's first-run wizard all
ask this function, so they never disagree about what is missing. It only looks at file
sizes and the Hugging Face cache folder (no hashing, no network) unless `deep=True`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from styleclip_desktop.paths import models_dir as default_models_dir
from styleclip_desktop.weights import hfcache, store
from styleclip_desktop.weights.catalog import Catalog, ModelEntry, load_catalog
from styleclip_desktop.weights.store import ModelStatus, State


@dataclass(frozen=True)
class FeatureStatus:
    name: str
    title: str
    ready: bool
    missing: tuple[str, ...] = ()  # ids to fetch: the preferred model of each unmet need
    alternatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # need -> ids that meet it
    present: tuple[str, ...] = ()  # ids (or user-given paths) that meet a need now
    corrupt: tuple[str, ...] = ()  # ids whose file is damaged
    optional_missing: tuple[str, ...] = ()  # `uses` models that would make it better
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Readiness:
    models_dir: Path
    catalog: Catalog
    models: Mapping[str, ModelStatus]
    features: Mapping[str, FeatureStatus]

    def feature(self, name: str) -> FeatureStatus:
        return self.features[name]

    def enables(self, model_id: str) -> tuple[str, ...]:
        """The features that list this model (or its group) as a need or an improvement."""
        entry = self.catalog.get(model_id)
        return tuple(f.name for f in self.catalog.all_features().values()
                     if any(ref in (entry.id, entry.group) for ref in (*f.needs, *f.uses)))

    def missing_required(self) -> list[ModelEntry]:
        """Required models in groups with nothing usable yet (every member, for display)."""
        out: list[ModelEntry] = []
        for members in self.catalog.required_groups().values():
            if not any(self.models[e.id].usable for e in members):
                out.extend(members)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "models_dir": str(self.models_dir),
            "models": {k: {"state": str(v.state), "path": str(v.path) if v.path else None,
                           "size": v.size, "detail": v.detail} for k, v in self.models.items()},
            "features": {k: {"title": f.title, "ready": f.ready, "missing": list(f.missing),
                             "alternatives": {n: list(ids) for n, ids in f.alternatives.items()},
                             "present": list(f.present), "corrupt": list(f.corrupt),
                             "optional_missing": list(f.optional_missing), "notes": list(f.notes)}
                         for k, f in self.features.items()},
        }


def check_readiness(models_dir: str | os.PathLike[str] | None = None, catalog: Catalog | None = None, *,
                    overrides: Mapping[str, str | os.PathLike[str] | None] | None = None,
                    deep: bool = False) -> Readiness:
    """Status of every model and feature. `overrides` maps a need (a group such as
    "generator", "clip" or "directions") to a file the user named explicitly."""
    mdir = Path(models_dir) if models_dir is not None else default_models_dir()
    cat = catalog or load_catalog()
    known = store.read_known_hashes(mdir)
    models: dict[str, ModelStatus] = {}
    for e in cat:
        if deep:
            models[e.id] = store.deep_status(e, mdir, known, record=False)[0]
        else:
            models[e.id] = store.quick_status(e, mdir, known)
    given = {k: Path(v) for k, v in (overrides or {}).items() if v}
    features = {name: _feature(f.name, f.title, f.needs, f.uses, cat, models, given)
                for name, f in cat.all_features().items()}
    return Readiness(mdir, cat, models, features)


def _feature(name: str, title: str, needs: tuple[str, ...], uses: tuple[str, ...], cat: Catalog,
             models: Mapping[str, ModelStatus], given: Mapping[str, Path]) -> FeatureStatus:
    missing: list[str] = []
    present: list[str] = []
    corrupt: list[str] = []
    notes: list[str] = []
    alternatives: dict[str, tuple[str, ...]] = {}
    for ref in needs:
        members = cat.resolve(ref)
        alternatives[ref] = tuple(e.id for e in members)
        corrupt += [e.id for e in members if models[e.id].state is State.CORRUPT]
        user_file = given.get(ref)
        if user_file is not None and user_file.is_file():
            present.append(str(user_file))
            continue
        ok = [e.id for e in members if models[e.id].usable]
        if ok:
            present.append(ok[0])
        elif members:
            missing.append(members[0].id)
            notes += _hints(members, models)
        else:
            missing.append(ref)
    optional_missing = []
    for ref in uses:
        members = cat.resolve(ref)
        if (given.get(ref) is None or not given[ref].is_file()) and not any(
                models[e.id].usable for e in members):
            optional_missing += [e.id for e in members]
            if ref == "directions" and members:
                notes.append(f"without {members[0].id}, global directions are precomputed once per "
                             "generator, which takes hours; `styleclip-desktop models download "
                             f"{members[0].id}` avoids that")
    return FeatureStatus(name, title, not missing, tuple(missing), alternatives, tuple(present),
                         tuple(dict.fromkeys(corrupt)), tuple(optional_missing), tuple(notes))


def _hints(members: tuple[ModelEntry, ...], models: Mapping[str, ModelStatus]) -> list[str]:
    out = []
    for e in members:
        st = models[e.id]
        if st.state is State.CORRUPT:
            out.append(f"{e.id} is damaged ({st.detail}); download or import it again")
        elif st.state is State.PARTIAL:
            out.append(f"{e.id}: {st.detail}")
        elif e.via_huggingface and hfcache.hf_offline():
            out.append(hfcache.offline_hint(e))
    return out
