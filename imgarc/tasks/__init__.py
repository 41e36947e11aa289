"""Understanding archives without decoding them: classifiers that read photos' latents.

- `features`: what a latent classifier reads (ŷ and log σ̂), from an archive entry or a photo.
- `network`: the small classifiers (NetSpec), built as ONNX graphs from their arrays (no torch).
- `taskfile`: the task file (.imgtask): classifier, classes, and the codec model it reads.
- `dataset`, `latent_data`: labeled folders and their latents (encoded once, cached).
- `classify`: labels for an archive's photos (g_s never runs); extraction by class.
- `learn`, `train` (torch, the [train] extra; import them only when training): training a task.
"""

from imgarc.tasks.classify import ClassifyReport, Prediction, classify_archive, extract_by_class
from imgarc.tasks.errors import LabeledFolderError, TaskError, TaskFileError, TaskModelMismatchError
from imgarc.tasks.features import FEATURES
from imgarc.tasks.taskfile import LATENT_CLASSIFIER, SUFFIX, Task, read_task, write_task

__all__ = [
    "ClassifyReport", "FEATURES", "LATENT_CLASSIFIER", "LabeledFolderError", "Prediction", "SUFFIX", "Task", "TaskError",
    "TaskFileError", "TaskModelMismatchError", "classify_archive", "extract_by_class", "read_task", "write_task",
]
