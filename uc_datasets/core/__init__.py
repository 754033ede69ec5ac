"""The core layer: what the methods and the evaluation share. It imports no wing.

``config`` (``BaseConfig``, the one epsilon conversion), ``imaging`` (the one image decoder,
PIL <-> tensors, lossless application, content keys), ``working_set`` (a dataset at the
working resolution), ``sources`` (the one dataset loader), ``surrogates`` (frozen encoders),
``labels`` (label sources), ``models`` (the model builder of victims and crafting models),
``augment`` (batched augmentations), ``contrastive`` (SimCLR encoder and loss),
``class_names`` (the class-name text encoder), ``grouping`` (canonical K-means groups),
``protector`` / ``persistence`` / ``protector_hub`` / ``map_context`` (the protector contract:
map callable, files, Hub, the calling map), ``method`` (the method contract), ``record`` (the
protection record), ``verify`` / ``visual`` / ``preview`` (checks of a protected copy).

This file imports nothing, so each submodule loads alone.
"""
