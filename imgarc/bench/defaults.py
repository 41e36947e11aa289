"""The bench's defaults, in a module of their own: `imgarc --help` and every command read them at
start (the CLI's options), without importing the bench's machinery."""

DEFAULT_QUALITIES = (10, 25, 50, 75, 95)
DEFAULT_CODER_QUALITIES = (75,)  # the other coders only change bytes and time: one quality suffices
DEFAULT_STUDY_IMAGES = 4  # the per-symbol arithmetic coder and CompressAI's pipeline: a few images
