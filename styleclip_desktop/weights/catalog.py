"""The catalog of official model files (`resources/models.toml`) as typed records.

The TOML file is the single place that says where each model is published, under which
license, and which features it unlocks; the downloader, the importer, the readiness
check and the first-run wizard all read it through `load_catalog`. $STYLECLIP_CATALOG
points at another file (a company mirror, or a test server).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from styleclip_desktop.errors import UserError
from styleclip_desktop.paths import resources_dir

# The kinds `identify.identify_file` reports; a catalog entry's `format` is one of them.
ADA_PKL = "stylegan2-ada-pkl"
TF_PKL = "stylegan2-tf-pkl"
ROSINALITY_PT = "stylegan2-rosinality-pt"
GENERATOR_KINDS = (ADA_PKL, TF_PKL, ROSINALITY_PT)
CLIP = "clip"
E4E = "e4e"
ARCFACE = "arcface-ir-se50"
MAPPER = "styleclip-mapper"
FS3 = "fs3-npy"
YUNET = "yunet-onnx"
ALEXNET = "torchvision-alexnet"  # the LPIPS backbone
KINDS = (*GENERATOR_KINDS, CLIP, E4E, ARCFACE, MAPPER, FS3, YUNET, ALEXNET)

MAPPER_GROUP = "mapper"
GDRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download"
GDRIVE_UC = "https://drive.google.com/uc"


class CatalogError(UserError):
    """The catalog file is missing or malformed."""


@dataclass(frozen=True)
class ModelEntry:
    id: str
    title: str
    group: str
    purpose: tuple[str, ...]
    required: bool
    format: str
    filename: str  # its name in the models directory
    license: str
    license_url: str
    size: int | None = None
    sha256: str | None = None
    url: str | None = None
    alternate_urls: tuple[str, ...] = ()
    gdrive_ids: tuple[str, ...] = ()
    source: str = "http"
    hf_repo: str | None = None
    hf_filenames: tuple[str, ...] = ()
    open_clip_model: str | None = None
    open_clip_pretrained: str | None = None
    mapper_name: str | None = None
    notes: str = ""
    alt_filenames: tuple[str, ...] = ()  # other names it is found under in the models directory

    @property
    def filenames(self) -> tuple[str, ...]:
        return (self.filename, *self.alt_filenames)

    @property
    def download_sources(self) -> tuple[Source, ...]:
        """Every place to try, best first: the main URL, its mirrors, then Google Drive."""
        urls = [self.url] if self.url else []
        urls += self.alternate_urls
        out = [Source(u, source_label(u)) for u in urls]
        for file_id in self.gdrive_ids:
            out += [Source(u, f"gdrive:{file_id}") for u in gdrive_urls(file_id)]
        return tuple(out)

    @property
    def download_urls(self) -> tuple[str, ...]:
        return tuple(s.url for s in self.download_sources)

    @property
    def via_huggingface(self) -> bool:
        return self.source == "huggingface"

    @property
    def uses_gdrive(self) -> bool:
        return bool(self.gdrive_ids)


@dataclass(frozen=True)
class Source:
    """One place a model is published. `label` names the copy: Google Drive's two endpoints
    serve one copy, while different hosts may serve different (equally good) files, so a
    checksum recorded from one copy only ever checks that copy."""

    url: str
    label: str


def source_label(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


@dataclass(frozen=True)
class Feature:
    name: str
    title: str
    needs: tuple[str, ...]  # model ids or group names; every one must be satisfied
    uses: tuple[str, ...] = ()  # improve the feature; it works without them


@dataclass(frozen=True)
class Catalog:
    entries: tuple[ModelEntry, ...]
    features: Mapping[str, Feature] = field(default_factory=dict)
    source: Path | None = None

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, model_id: str) -> ModelEntry:
        for e in self.entries:
            if e.id == model_id:
                return e
        known = ", ".join(e.id for e in self.entries)
        raise UserError(f"unknown model '{model_id}'; known models: {known}")

    def ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.entries)

    def group(self, name: str) -> tuple[ModelEntry, ...]:
        return tuple(e for e in self.entries if e.group == name)

    def resolve(self, ref: str) -> tuple[ModelEntry, ...]:
        """The entries a feature's `needs` item names: a group, else a single model id."""
        members = self.group(ref)
        if members:
            return members
        return tuple(e for e in self.entries if e.id == ref)

    def by_format(self, kind: str) -> tuple[ModelEntry, ...]:
        return tuple(e for e in self.entries if e.format == kind)

    def required_groups(self) -> dict[str, tuple[ModelEntry, ...]]:
        """Required entries, grouped; the first entry of a group is the one fetched by default."""
        out: dict[str, list[ModelEntry]] = {}
        for e in self.entries:
            if e.required:
                out.setdefault(e.group, []).append(e)
        return {g: tuple(v) for g, v in out.items()}

    def all_features(self) -> dict[str, Feature]:
        """Named features plus one `mapper:<name>` per mapper entry."""
        out = {k: v for k, v in self.features.items() if k != MAPPER_GROUP}
        template = self.features.get(MAPPER_GROUP)
        for e in self.entries:
            if e.group == MAPPER_GROUP and e.mapper_name:
                name = f"mapper:{e.mapper_name}"
                title = (template.title if template else "Latent mapper: {name}").format(
                    name=e.mapper_name.replace("_", " "))
                needs = (e.id, *(template.needs if template else ()))
                out[name] = Feature(name, title, needs)
        return out

    def replace_entries(self, entries: Sequence[ModelEntry]) -> Catalog:
        return Catalog(tuple(entries), self.features, self.source)


def gdrive_urls(file_id: str) -> tuple[str, str]:
    """The two public endpoints that serve a shared Google Drive file."""
    fid = quote(file_id, safe="")
    return (f"{GDRIVE_DOWNLOAD}?id={fid}&export=download",
            f"{GDRIVE_UC}?export=download&id={fid}")


def default_catalog_path() -> Path:
    env = os.environ.get("STYLECLIP_CATALOG")
    return Path(env).expanduser() if env else resources_dir() / "models.toml"


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    p = Path(path) if path is not None else default_catalog_path()
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise CatalogError(f"the model catalog is missing: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"the model catalog {p} is not valid TOML: {exc}") from exc
    return parse_catalog(data, source=p)


def parse_catalog(data: Mapping[str, Any], source: Path | None = None) -> Catalog:
    where = f" in {source}" if source else ""
    entries = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("model", [])):
        try:
            entry = _entry(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"model #{i + 1}{where} is malformed: {exc}") from exc
        if entry.id in seen:
            raise CatalogError(f"model id '{entry.id}' appears twice{where}")
        seen.add(entry.id)
        entries.append(entry)
    features = {}
    for name, raw in (data.get("features") or {}).items():
        features[name] = Feature(name=name, title=str(raw.get("title", name)),
                                 needs=tuple(str(x) for x in raw.get("needs", ())),
                                 uses=tuple(str(x) for x in raw.get("uses", ())))
    return Catalog(tuple(entries), features, source)


def _entry(raw: Mapping[str, Any]) -> ModelEntry:
    kind = str(raw["format"])
    if kind not in KINDS:
        raise ValueError(f"unknown format '{kind}'")
    filename = str(raw["filename"])
    alt = tuple(str(f) for f in raw.get("alt_filenames", ()))
    for name in (filename, *alt):
        if not name or Path(name).name != name:
            raise ValueError(f"file names must be plain names, got '{name}'")
    sha = str(raw.get("sha256") or "").lower() or None
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise ValueError(f"sha256 must be 64 hex digits, got '{sha}'")
    return ModelEntry(
        id=str(raw["id"]),
        title=str(raw["title"]),
        group=str(raw.get("group") or raw["id"]),
        purpose=tuple(str(p) for p in raw.get("purpose", ())),
        required=bool(raw.get("required", False)),
        format=kind,
        filename=filename,
        license=str(raw.get("license", "")),
        license_url=str(raw.get("license_url", "")),
        size=int(raw["size"]) if raw.get("size") else None,
        sha256=sha,
        url=str(raw["url"]) if raw.get("url") else None,
        alternate_urls=tuple(str(u) for u in raw.get("alternate_urls", ())),
        gdrive_ids=tuple(str(g) for g in raw.get("gdrive_ids", ())),
        source=str(raw.get("source", "http")),
        hf_repo=str(raw["hf_repo"]) if raw.get("hf_repo") else None,
        hf_filenames=tuple(str(f) for f in raw.get("hf_filenames", ())),
        open_clip_model=raw.get("open_clip_model"),
        open_clip_pretrained=raw.get("open_clip_pretrained"),
        mapper_name=raw.get("mapper_name"),
        notes=str(raw.get("notes", "")),
        alt_filenames=alt,
    )
