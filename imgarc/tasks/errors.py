"""What a user can get wrong with tasks: each one line and a non-zero exit (imgarc.cli.app)."""

from __future__ import annotations

from imgarc.errors import ImgarcError


class TaskError(ImgarcError):
    """Base class of the task errors."""


class TaskFileError(TaskError):
    """A task file is missing, not a task file, made by a newer imgarc, or damaged."""


class TaskModelMismatchError(TaskError):
    """A task was trained on the latents of another model (or other weights) than a photo's."""


class LabeledFolderError(TaskError):
    """A labeled folder (one subfolder per class) cannot be trained on: too few classes, a class
    folder with no images, held-out classes the training set lacks."""

    exit_code = 2
