"""The evaluation side: the hacker who trains victims on protected data.

``relabel`` (class-name and pseudo-label relabellings), ``victims`` (models and their
training), ``defenses`` (the paper's defences), ``simclr`` (the unsupervised hacker),
``data`` (clean/protected splits as tensors), ``sweep`` (``train_and_score`` and the
labelling x victim x defence sweep), ``reporting`` (rows, tables, plots, results files),
``comparison`` (several protected sets against the same victims, with a shared clean-victim
cache: the strength benchmark's engine), ``controls`` (random-noise controls), ``agreement``
(keys against labels), ``tables`` and ``plots`` (the comparison's markdown and figures) and
``metrics`` (the ``evaluate`` metric ``unlearnability``).

The evaluation side reads datasets and protection metadata; it never imports the
protection side's training code. This file imports nothing, so submodules load alone.
"""
