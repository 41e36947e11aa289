"""Errors a user can cause, each with a message that says what and what to do.

Library code raises these; only the CLI turns them into one line and an exit code.
"""


class ImgarcError(Exception):
    """Base class: anything imgarc reports to a user as a clean error."""

    exit_code = 1


class UsageError(ImgarcError):
    """Bad arguments: missing source, non-empty destination, unknown option value."""

    exit_code = 2


class ArchiveError(ImgarcError):
    """The archive file itself is unusable: not an archive, unknown version, truncated index."""


class DamagedArchiveError(ArchiveError):
    """The archive's frame (file header, index or footer) is damaged or cut short.

    Its index cannot be trusted, but entries may still be intact: `imgarc extract --salvage`
    finds them by scanning for entry headers.
    """


class EntryCorruptError(ArchiveError):
    """One entry is damaged (CRC mismatch, truncated, inconsistent header)."""

    def __init__(self, entry: str, detail: str):
        self.entry = entry
        self.detail = detail
        super().__init__(f"entry {entry!r} is damaged: {detail}")


class UnsafePathError(ArchiveError):
    """An entry path would land outside the extraction folder."""


class ModelError(ImgarcError):
    """A model or weights file is missing, unknown, altered or inconsistent."""


class TrainingError(ImgarcError):
    """Training cannot go on (it diverged); the last good checkpoint is left as it was."""


class ImageError(ImgarcError):
    """An image cannot be coded (decoder failure, unsupported shape)."""


class DestinationError(ImgarcError):
    """An extracted file cannot be written where it belongs (a folder or file of that name is in the
    way, no permission, read-only file system); other entries may still be written."""


class OutOfSpaceError(ImgarcError):
    """The disk filled up while writing; nothing was left under the final name."""


class LatentStreamError(ImgarcError):
    """A coded latent stream does not decode (damaged data or wrong tables)."""


class NewerFormatError(ArchiveError):
    """The archive or one entry uses a format feature only a newer imgarc knows."""


class UnreadableFileError(ImgarcError):
    """A source file or folder cannot be read (permissions, I/O error): compress leaves it out and
    says so, or with --strict stops before publishing anything."""


class IncompleteArchiveError(ImgarcError):
    """The archive was written, but some source files could not be read and are not in it."""


class MissingExtraError(ImgarcError):
    """A command or option needs packages of an optional extra that is not installed."""

    exit_code = 2
