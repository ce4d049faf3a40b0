"""What an exported picture says about itself: that it was edited by AI, how, and with what.

One dictionary (`build_metadata`) is written three ways so every common reader finds it:

- PNG: an iTXt chunk "StyleCLIP-Desktop" holding the JSON, plus XMP in the standard
  "XML:com.adobe.xmp" iTXt chunk and plain "Software"/"Description" text;
- JPEG and WebP: an XMP packet (IPTC digital source type, description, creator tool and
  the JSON) and EXIF (ImageDescription, Software, and the JSON in UserComment), since
  some tools strip one and keep the other;
- GIF: a comment extension with the notice and the JSON;
- MP4: the "comment" tag holds the JSON, "description" the notice.

`read_metadata` reads it back from any of them.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from styleclip_desktop import __version__
from styleclip_desktop.errors import UserError

APP_NAME = "StyleCLIP Desktop"
EDITED_NOTICE = "AI-edited with StyleCLIP Desktop"
GENERATED_NOTICE = "AI-generated with StyleCLIP Desktop"
PNG_KEY = "StyleCLIP-Desktop"
NS = "urn:styleclip-desktop:metadata:1.0/"
_IPTC_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# A photo changed by a trained model is a composite; a face made from a seed is wholly generated.
IPTC_COMPOSITE = _IPTC_TYPES + "compositeWithTrainedAlgorithmicMedia"
IPTC_GENERATED = _IPTC_TYPES + "trainedAlgorithmicMedia"

_EXIF_IFD = 0x8769
_IMAGE_DESCRIPTION, _SOFTWARE, _USER_COMMENT = 0x010E, 0x0131, 0x9286
_ASCII_PREFIX = b"ASCII\x00\x00\x00"
_NAMESPACES = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "scd": NS,
}


def build_metadata(doc: Any, alphas: Mapping[str, float] | None = None, *,
                   models: Mapping[str, str] | None = None, synthetic: bool = False,
                   crop: bool = False, dims: tuple[int, int] | None = None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record of one export of `doc` (a `Document`) at `alphas` (default: static alphas).

    `models` are the identities that rendered it (role -> sha256); they win over the ones
    the project was made with, since they describe these pixels."""
    layers = []
    for layer in doc.layers:
        alpha = float(alphas.get(layer.id, layer.alpha)) if alphas is not None else float(layer.alpha)
        entry = {"name": layer.name, "kind": layer.kind, "visible": bool(layer.visible), "alpha": alpha,
                 **layer.params.settings_json()}
        mask = getattr(layer, "mask", None)
        if mask is not None:  # where it acted: the settings and how much of the face it covers
            entry["mask"] = {**mask.settings_json(), "coverage": round(float(mask.coverage(64).mean()), 4)}
        layers.append(entry)
    from_photo = doc.source is not None
    # A domain layer's face is not pasted back unless its layer says so (see Renderer.crop_only).
    crop = crop or any(layer.visible and layer.kind == "domain" and not getattr(layer.params, "paste_back", True)
                       for layer in doc.layers)
    meta: dict[str, Any] = {
        "app": APP_NAME,
        "app_version": __version__,
        "ai_edited": True,
        "notice": EDITED_NOTICE if from_photo else GENERATED_NOTICE,
        "digital_source_type": IPTC_COMPOSITE if from_photo else IPTC_GENERATED,
        "synthetic": bool(synthetic or doc.synthetic),
        "source": "photo" if from_photo else ("seed" if doc.seed is not None else "latent"),
        "models": {**dict(doc.models), **dict(models or {})},
        "layers": layers,
        "output": {"crop": bool(crop) or not from_photo},
    }
    if doc.seed is not None:
        meta["seed"] = int(doc.seed)
    if dims is not None:
        meta["output"].update(width=int(dims[0]), height=int(dims[1]))
    meta.update(extra or {})
    return meta


def summary(meta: Mapping[str, Any]) -> str:
    """One human line: the notice and what was applied."""
    parts = []
    for layer in meta.get("layers", []):
        if not layer.get("visible", True) or not layer.get("alpha"):
            continue
        text = layer.get("target") or layer.get("prompt") or layer.get("checkpoint") or layer.get("name")
        beta = f", β {layer['beta']:g}" if isinstance(layer.get("beta"), int | float) else ""
        masked = " (masked)" if isinstance(layer.get("mask"), dict) and layer["mask"].get("enabled") else ""
        parts.append(f'"{text}" α {layer["alpha"]:g}{beta}{masked}')
    notice = str(meta.get("notice", EDITED_NOTICE))
    if meta.get("synthetic"):
        notice += " (synthetic test models)"
    return notice + (": " + "; ".join(parts) if parts else "")


def to_json(meta: Mapping[str, Any]) -> str:
    return json.dumps(meta, ensure_ascii=True, sort_keys=True, allow_nan=False)


# --- writing ------------------------------------------------------------------------------


def xmp_packet(meta: Mapping[str, Any]) -> bytes:
    ns = " ".join(f"xmlns:{k}={quoteattr(v)}" for k, v in _NAMESPACES.items() if k not in ("x", "rdf"))
    tool = f"{APP_NAME} {meta.get('app_version', __version__)}"
    body = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        f'  <rdf:Description rdf:about="" {ns}\n'
        f"    xmp:CreatorTool={quoteattr(tool)}\n"
        f"    Iptc4xmpExt:DigitalSourceType={quoteattr(str(meta.get('digital_source_type', IPTC_COMPOSITE)))}\n"
        f"    scd:AIEdited=\"True\" scd:Synthetic=\"{bool(meta.get('synthetic'))}\">\n"
        f'   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(summary(meta))}</rdf:li>'
        "</rdf:Alt></dc:description>\n"
        f"   <scd:Metadata>{escape(to_json(meta))}</scd:Metadata>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return body.encode("utf-8")


def exif_bytes(meta: Mapping[str, Any]) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    # ImageDescription and Software are ASCII fields; the JSON is ASCII too (escaped).
    exif[_IMAGE_DESCRIPTION] = str(meta.get("notice", EDITED_NOTICE))
    exif[_SOFTWARE] = f"{APP_NAME} {meta.get('app_version', __version__)}"
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _ASCII_PREFIX + to_json(meta).encode("ascii")
    return exif.tobytes()


def png_info(meta: Mapping[str, Any]) -> Any:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt(PNG_KEY, to_json(meta))
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(meta).decode("utf-8"))
    info.add_text("Software", f"{APP_NAME} {meta.get('app_version', __version__)}")
    info.add_itxt("Description", summary(meta))
    return info


def gif_comment(meta: Mapping[str, Any]) -> bytes:
    return (summary(meta) + "\n" + to_json(meta)).encode("utf-8")


# --- reading ------------------------------------------------------------------------------


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The StyleCLIP Desktop record in a PNG, JPEG, WebP, GIF or MP4; {} when it carries none."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.suffix.lower() in _VIDEO_SUFFIXES and path.is_file():
        return _from_video(path)
    try:
        with Image.open(path) as im:
            info = dict(im.info)
            text = dict(getattr(im, "text", {}) or {}) if im.format == "PNG" else {}
            exif = im.getexif()
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image this version can read") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    for candidate in (text.get(PNG_KEY), info.get(PNG_KEY)):
        found = _parse_json(candidate)
        if found is not None:
            return found
    found = _from_xmp(info.get("xmp") or text.get("XML:com.adobe.xmp") or info.get("XML:com.adobe.xmp"))
    if found is not None:
        return found
    found = _from_exif(exif)
    if found is not None:
        return found
    comment = info.get("comment")
    if isinstance(comment, bytes | str):
        raw = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else comment
        found = _parse_json(raw.split("\n", 1)[1] if "\n" in raw else raw)
        if found is not None:
            return found
    return {}


_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")


def _from_video(path: Path) -> dict[str, Any]:
    """The record in an MP4's "comment" tag, read with the bundled ffmpeg."""
    import subprocess

    import imageio_ffmpeg

    try:
        proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata",
                               "-"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if proc.returncode != 0:
        raise UserError(f"{path} is not a video this version can read")
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("comment="):
            # ffmetadata escapes = ; # \ with a backslash
            found = _parse_json(re.sub(r"\\(.)", r"\1", line[len("comment="):]))
            if found is not None:
                return found
    return {}


def _parse_json(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("app") == APP_NAME else None


_DOCTYPE = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def _from_xmp(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, bytes) or _DOCTYPE.search(raw):
        return None  # entity declarations are never needed here and could expand without bound
    start, end = raw.find(b"<x:xmpmeta"), raw.rfind(b"</x:xmpmeta>")
    if start < 0 or end < 0:
        return None
    try:
        root = ET.fromstring(raw[start: end + len(b"</x:xmpmeta>")])
    except ET.ParseError:
        return None
    node = root.find(f".//{{{NS}}}Metadata")
    return _parse_json(node.text) if node is not None else None


def _from_exif(exif: Any) -> dict[str, Any] | None:
    try:
        comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # a damaged EXIF block means there is nothing of ours to read
        return None
    if isinstance(comment, bytes):
        comment = comment[len(_ASCII_PREFIX):] if comment.startswith(_ASCII_PREFIX) else comment
    return _parse_json(comment)
