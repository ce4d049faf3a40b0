"""Errors of the editing document and its project file.

Every message is one line for the person using the product: what is wrong with which
layer or file, and what to do about it.
"""

from __future__ import annotations

from styleclip_desktop.errors import UserError


class DocumentError(UserError):
    """An edit the document refuses."""


class LockedLayerError(DocumentError):
    """The layer is locked; it must be unlocked before it can be changed."""

    def __init__(self, layer_name: str, what: str = "changed") -> None:
        super().__init__(f'the layer "{layer_name}" is locked and cannot be {what}; unlock it first')
        self.layer_name = layer_name


class ProjectFileError(UserError):
    """A project file (.scproj) cannot be read: damaged, incomplete or from a newer version."""


class ProjectReadError(ProjectFileError):
    """The file could not be read from disk at all."""


class CorruptProjectError(ProjectFileError):
    """The file is not a readable zip archive: damaged, truncated or not a project."""


class OversizedProjectError(CorruptProjectError):
    """A part of the project would unpack to more than any project holds: a damaged file,
    or one made to exhaust memory (a zip bomb). It is refused before it is unpacked."""


class MissingMemberError(ProjectFileError):
    """A part the project needs is missing from the archive."""


class NewerSchemaError(ProjectFileError):
    """The project was written by a newer version of the product, in a format this one cannot read."""


class ManifestError(ProjectFileError):
    """The project's manifest is not valid JSON, or holds values of the wrong kind."""


class ArrayDataError(ProjectFileError):
    """The project's arrays (latent, deltas) are unreadable or have the wrong shape or type."""


class SourcePhotoError(ProjectFileError):
    """The photo stored in the project does not match its recorded checksum."""
