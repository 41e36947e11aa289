"""Training and fine-tuning of imgarc's own codec models."""
