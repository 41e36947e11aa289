"""Photos as files: what is a photo the codec may touch, reading it, writing it back in its own
format with its metadata and alpha, and keeping any file byte-exact.

Knows pixels and file formats only: no codec, no archive byte layout.
"""

from imgarc.photo.model import MAX_PIXELS, NotCoded, Photo
from imgarc.photo.output_format import check_extract_format, check_photo_fields, photo_file_bytes, photo_output_path
from imgarc.photo.read import photo_size, read_photo
from imgarc.photo.stored import STORAGE_NAMES, StoredPayload, pack_stored, unpack_stored

__all__ = [
    "MAX_PIXELS", "NotCoded", "Photo", "STORAGE_NAMES", "StoredPayload", "check_extract_format", "check_photo_fields",
    "pack_stored", "photo_file_bytes", "photo_output_path", "photo_size", "read_photo", "unpack_stored",
]
