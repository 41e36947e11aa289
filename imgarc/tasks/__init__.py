"""Understanding archives without decoding them: classifiers that read photos' latents.

- `features`: what a latent classifier reads (ŷ and log σ̂), from an archive entry or a photo.
- `network`: the small classifiers (NetSpec), built as ONNX graphs from their arrays (no torch).
- `taskfile`: the task file (.imgtask): classifier, classes, and the codec model it reads.
- `dataset`, `latent_data`: labeled folders and their latents (encoded once, cached).
- `classify`: labels for an archive's photos (g_s never runs); extraction by class.
- `learn`, `train` (torch, the [train] extra; import them only when training): training a task.
Each public name below loads its module when first used (imgarc.lazy_names).
"""

from imgarc.lazy_names import lazy_names

__getattr__, __dir__, __all__ = lazy_names(__name__, {
    **dict.fromkeys(("ClassifyReport", "Prediction", "classify_archive", "extract_by_class"), ".classify"),
    **dict.fromkeys(("LabeledFolderError", "TaskError", "TaskFileError", "TaskModelMismatchError"), ".errors"),
    "FEATURES": ".features",
    **dict.fromkeys(("LATENT_CLASSIFIER", "SUFFIX", "Task", "read_task", "write_task"), ".taskfile"),
})
