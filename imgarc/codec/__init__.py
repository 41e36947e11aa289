"""The learned image codec: architectures, shipped weights, image <-> latents."""
