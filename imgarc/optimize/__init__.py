"""Network compression: smaller variants of a model (`imgarc optimize`), each an ordinary model id
whose weights file records its parent. `widths`: the channel groups and how many of each a child
keeps; `prune`: structured pruning of every network to those widths; the child is then
fine-tuned by the trainer with distillation from the parent (imgarc.train.trainer)."""
