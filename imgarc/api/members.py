"""Choosing entries by name: the MEMBER and GLOB arguments of `extract` and `show`.

A pattern is matched against an entry's whole path, as `imgarc list` prints it:
`*` and `?` stay inside one folder, `[abc]` is a set of characters, `**` spans folders
(`**/*.jpg`: every JPEG at any depth). A pattern that names a folder selects everything under it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Iterable

from imgarc.archive import EntryHeader
from imgarc.errors import ArchiveError, ImgarcError, UsageError


class MemberNotFoundError(ImgarcError):
    """A member name or glob matches no entry of the archive (exit status 1, like a missing file)."""


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """The regex of one pattern: the path itself, or a folder whose contents it then selects."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
            out.append("(?:[^/]+/)*")  # any number of folders, none included
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (close := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:close]
            negate = body.startswith("!")
            chars = re.escape(body[1:] if negate else body).replace(r"\-", "-")
            out.append(f"[^/{chars}]" if negate else f"[{chars}]")
            i = close + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + "(?:/.*)?", re.DOTALL)


def _normalized(pattern: str) -> str:
    """What a user types, as an entry path is spelt: no leading `./`, no trailing `/`."""
    while pattern.startswith("./"):
        pattern = pattern[2:]
    return pattern.rstrip("/") if pattern.strip("/") else pattern


@dataclass(frozen=True)
class MemberSelection:
    """The entries named by `include` patterns (none: every entry) less those `exclude` names."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _include: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _exclude: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for pattern in self.include + self.exclude:
            if not _normalized(pattern) or "\x00" in pattern:
                raise UsageError(f"{pattern!r} is not a member name or glob (give a path as `imgarc list` prints it)")
        object.__setattr__(self, "_include", tuple(_glob_regex(_normalized(p)) for p in self.include))
        object.__setattr__(self, "_exclude", tuple(_glob_regex(_normalized(p)) for p in self.exclude))

    @property
    def everything(self) -> bool:
        return not self.include and not self.exclude

    def matches(self, path: str) -> bool:
        """Whether the entry at `path` is selected."""
        if self._include and not any(r.fullmatch(path) for r in self._include):
            return False
        return not any(r.fullmatch(path) for r in self._exclude)

    def select(self, headers: Iterable[tuple[int, EntryHeader | ArchiveError]], archive: str = "the archive",
               consequence: str = "nothing was extracted") -> list[int]:
        """The positions of the selected entries among (position, header or its read error).

        An entry whose header cannot be read has no name: it is selected (and reported as
        damaged by the caller) only when no `include` pattern is given. Raises
        MemberNotFoundError, naming every include pattern that matches no entry, and ending with
        `consequence` (the caller has done nothing yet).
        """
        chosen: list[int] = []
        paths: list[str] = []
        damaged = 0
        for i, header in headers:
            if isinstance(header, ArchiveError):
                damaged += 1
                if not self.include:
                    chosen.append(i)
                continue
            paths.append(header.path)
            if self.matches(header.path):
                chosen.append(i)
        missing = [p for p, r in zip(self.include, self._include) if not any(r.fullmatch(path) for path in paths)]
        if missing:
            raise MemberNotFoundError(_not_found_message(missing, paths, archive, damaged) + f"; {consequence}")
        return chosen


def _not_found_message(missing: list[str], paths: list[str], archive: str, damaged: int) -> str:
    names = ", ".join(repr(p) for p in missing)
    message = f"no entry of {archive} matches {names}"
    close = list(dict.fromkeys(c for p in missing for c in difflib.get_close_matches(_normalized(p), paths, n=3)))
    if close:
        message += f" (did you mean {', '.join(repr(c) for c in close)}?)"
    else:
        message += " (entry names are as `imgarc list` prints them; quote globs so the shell leaves them alone)"
    if damaged:
        message += f"; {damaged} entries have damaged headers (`imgarc extract --salvage` recovers what it can)"
    return message
