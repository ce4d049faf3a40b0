"""The editing document: source photo, alignment, latent, layer stack, timeline, undo
commands and the project file. Plain Python + numpy; no Qt, no torch.

How a layer stack renders is described in `styleclip_desktop.document.layers`.
"""

from styleclip_desktop.document.actions import (
    add_layer,
    clear_keyframes,
    duplicate_layer,
    morph,
    move_layer,
    remove_keyframe,
    remove_layer,
    rename_layer,
    set_alpha,
    set_document_attr,
    set_duration,
    set_fps,
    set_keyframe,
    set_locked,
    set_mask,
    set_params,
    set_visible,
    toggle_visibility,
)
from styleclip_desktop.document.autosave import (
    Autosaver,
    RecoverableProject,
    autosave_for_project,
    autosave_path,
    clear_stale_temporaries,
    find_recoverable,
    forget_autosave,
    recover,
)
from styleclip_desktop.document.commands import (
    AddLayer,
    Command,
    DocumentCommand,
    MacroCommand,
    MoveLayer,
    RemoveLayer,
    SetAttr,
    SetDocumentAttr,
    SetLayerAttr,
    SetTimelineAttr,
    SetTrack,
)
from styleclip_desktop.document.document import Alignment, Document, SourcePhoto, compare_models, sha256_hex
from styleclip_desktop.document.domain_params import DomainParams
from styleclip_desktop.document.errors import (
    ArrayDataError,
    CorruptProjectError,
    DocumentError,
    LockedLayerError,
    ManifestError,
    MissingMemberError,
    NewerSchemaError,
    OversizedProjectError,
    ProjectFileError,
    ProjectReadError,
    SourcePhotoError,
)
from styleclip_desktop.document.events import EmitterGroup, Event, EventedModel, EventEmitter
from styleclip_desktop.document.layers import Layer, LayerStack, new_layer_id
from styleclip_desktop.document.masks import MASK_SIZE, LayerMask
from styleclip_desktop.document.params import (
    LAYER_KINDS,
    S_SPACE,
    W_SPACE,
    DirectionSource,
    GlobalDirectionParams,
    LayerParams,
    MapperParams,
    OptimizationParams,
    SliderParams,
    params_class,
    register_layer_kind,
)
from styleclip_desktop.document.project_file import (
    PROJECT_SUFFIX,
    SCHEMA_VERSION,
    load_project,
    load_project_bytes,
    read_manifest,
    read_thumbnail,
    save_project,
    write_project,
)
from styleclip_desktop.document.serialize import canonical_state, fingerprint
from styleclip_desktop.document.timeline import EASE_IN_OUT, EASINGS, HOLD, LINEAR, Keyframe, Timeline
from styleclip_desktop.document.undo import UndoStack

__all__ = [
    "AddLayer", "Alignment", "ArrayDataError", "Autosaver", "Command", "CorruptProjectError", "DirectionSource", "DomainParams",
    "Document", "DocumentCommand", "DocumentError", "EASE_IN_OUT", "EASINGS", "EmitterGroup", "Event",
    "EventEmitter", "EventedModel", "GlobalDirectionParams", "HOLD", "Keyframe", "LAYER_KINDS", "LINEAR",
    "Layer", "LayerMask", "LayerParams", "LayerStack", "MASK_SIZE", "LockedLayerError", "MacroCommand", "ManifestError",
    "MapperParams", "MissingMemberError", "MoveLayer", "NewerSchemaError", "OptimizationParams", "OversizedProjectError", "SliderParams",
    "PROJECT_SUFFIX", "ProjectFileError", "ProjectReadError", "RecoverableProject", "RemoveLayer",
    "SCHEMA_VERSION", "S_SPACE", "SetAttr", "SetDocumentAttr", "SetLayerAttr", "SetTimelineAttr",
    "SetTrack", "SourcePhoto", "SourcePhotoError", "Timeline", "UndoStack", "W_SPACE", "add_layer",
    "autosave_for_project", "autosave_path", "canonical_state", "clear_keyframes", "clear_stale_temporaries", "compare_models",
    "duplicate_layer", "find_recoverable", "fingerprint", "forget_autosave", "load_project", "load_project_bytes", "morph",
    "move_layer", "new_layer_id", "params_class", "read_manifest", "read_thumbnail", "recover",
    "register_layer_kind", "remove_keyframe", "remove_layer", "rename_layer", "save_project",
    "set_alpha", "set_document_attr", "set_duration", "set_fps", "set_keyframe", "set_locked",
    "set_mask", "set_params", "set_visible", "sha256_hex", "toggle_visibility", "write_project",
]
