"""Network compression: smaller variants of a model (`imgarc optimize`), each an ordinary model id
whose weights file records its parent. `prune`: structured pruning of g_a and g_s; the variant
is then fine-tuned by the trainer with distillation from the parent (imgarc.train.trainer)."""
