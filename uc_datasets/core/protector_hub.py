"""A protector and the Hub: a private model repo, pushed and read back, with tokens kept out of errors.

A protector undoes the protection of every image it protected, so :func:`push_protector`
creates the repo private and refuses a push that would leave it public unless
``allow_public=True``. Tokens are passed through to ``huggingface_hub`` and never logged or put
in error messages (:class:`no_token_in_errors`).

Example:
    >>> url = push_protector(uc_protect, "me/pets-protector")  # doctest: +SKIP
    >>> local_dir = resolve_protector_path("me/pets-protector")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from uc_datasets.core.persistence import CONFIG_NAME, WEIGHTS_NAME

if TYPE_CHECKING:
    from uc_datasets.core.protector import BaseProtector

logger = logging.getLogger(__name__)


def resolve_protector_path(path: str | os.PathLike, *, token: str | None = None,
                           revision: str | None = None) -> str | os.PathLike:
    """``path`` itself when it is a directory, else the local snapshot of the Hub model repo ``path``."""
    if not Path(path).is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            HFValidationError,
        )

        try:
            path = snapshot_download(str(path), repo_type="model", revision=revision, token=token,
                                     allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
        except (HfHubHTTPError, HFValidationError, EntryNotFoundError) as e:
            raise FileNotFoundError(
                f"{str(path)!r} is neither a local protector directory nor a Hub model repo you can read "
                f"({type(e).__name__}). Check the path, or the repo id and that your token can read the private repo."
            ) from e
    return path


#: What to check after a Hub authentication error; the command line prints it as its ``hint:`` line.
HUB_TOKEN_HINT = "check the Hub token (--token or HF_TOKEN) and the repo id"


class HubAuthError(PermissionError):
    """The Hub refused the token (401/403); the message ends with :data:`HUB_TOKEN_HINT`."""

    exit_code = 2  # bad input on the command line


class PublicProtectorError(PermissionError):
    """A protector push would make the protector public; nothing was pushed."""

    exit_code = 1


# ---------------------------------------------------------------------------- protector repos
def push_protector(protector: BaseProtector, repo_id: str, *, private: bool = True, allow_public: bool = False,
                   token: str | None = None, revision: str | None = None,
                   commit_message: str | None = None) -> str:
    """Push ``protector`` to a **private** Hub model repo; returns the commit URL.

    A protector undoes the protection of every image it protected, so the repo is created
    private, and a push that would leave it public (``private=False``, or an existing public
    repo) is refused unless ``allow_public=True`` is passed explicitly.

    Example:
        >>> uc_protect.push_to_hub("me/pets-protector")  # private model repo  # doctest: +SKIP
        >>> load_protector("me/pets-protector")  # doctest: +SKIP
    """
    why = ("a protector is a secret: whoever holds it can subtract the perturbations and undo the protection of "
           "every image it protected")
    if not private and not allow_public:
        raise PublicProtectorError(
            f"Refusing to push the protector to a public repo: {why}. Keep private=True (the default). If you "
            "really want it public, pass allow_public=True as well."
        )
    if not private:
        logger.warning("Pushing the protector to a PUBLIC repo %s (allow_public=True): %s.", repo_id, why)
    api = HfApi(token=token)
    with no_token_in_errors(token):
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if not api.repo_info(repo_id, repo_type="model").private and not allow_public:
            raise PublicProtectorError(
                f"Refusing to push the protector to {repo_id}: that model repo already exists and is public, and "
                f"{why}. Push to a new repo id, or make this one private first "
                f"(HfApi().update_repo_settings({repo_id!r}, private=True))."
            )
        if revision is not None:
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            protector.save_pretrained(tmp)
            Path(tmp, "README.md").write_text(_PROTECTOR_README.format(method=protector.method))
            commit = api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model", revision=revision,
                                       commit_message=commit_message or "Upload Unlearnable Clusters protector")
    logger.info("Pushed the protector to %s model repo %s", "private" if private else "PUBLIC", repo_id)
    return commit.commit_url


_PROTECTOR_README = """---
tags:
- unlearnable-clusters
---
# Unlearnable Clusters protector ({method}) - keep this repository private

This repository holds a fitted uc-datasets protector: the per-cluster perturbations and
cluster centres. Whoever can read it can undo the protection of every image it protected.
Do not make it public and do not copy it into the dataset repository.

Load it with `uc_datasets.load_protector("<this repo id>")`.
"""


class no_token_in_errors:
    """Re-raise any error whose message contains ``token`` with the token masked."""

    def __init__(self, token: str | None):
        self.token = token

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        text = str(exc).replace(self.token, "***") if self.token else str(exc)
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(exc, HfHubHTTPError) and status in (401, 403):
            first = text.strip().splitlines()[0] if text.strip() else f"HTTP {status}"
            raise HubAuthError(f"{first}\nhint: {HUB_TOKEN_HINT}") from None
        if not self.token or self.token not in str(exc):
            return False
        raise RuntimeError(f"{exc_type.__name__}: {text}") from None
