"""A protector and the Hub: a private model repo, pushed and read back, with tokens kept out of errors.

A protector undoes the protection of every image it protected, so :func:`push_protector`
creates the repo private and refuses a push that would leave it public unless
``allow_public=True``. Tokens are passed through to ``huggingface_hub`` and never logged or put
in error messages (:class:`no_token_in_errors`).

This module sits below the protector contract (:mod:`uc_datasets.core.protector`) and never
imports it: a push takes the function that writes the protector's files (its
``save_pretrained``), a read returns the local directory that holds them. ``huggingface_hub``
is imported only when the Hub is used, so a protector loaded from a directory does not pay for it.

Example:
    >>> commit = push_protector(uc_protect.save_pretrained, "me/pets-protector", method="UC")  # doctest: +SKIP
    >>> local_dir = resolve_protector_path("me/pets-protector", revision="main")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from uc_datasets.core.persistence import CONFIG_NAME, WEIGHTS_NAME

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

logger = logging.getLogger(__name__)

#: The model card of a protector repo (``README.md``), pushed with the protector's files.
PROTECTOR_CARD_NAME = "README.md"


def resolve_protector_path(path: str | os.PathLike, *, revision: str | None = None,
                           cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                           local_files_only: bool = False, token: str | bool | None = None) -> Path:
    """``path`` itself when it is a directory, else the local snapshot of the Hub model repo ``path``.

    The keywords are those of ``huggingface_hub.ModelHubMixin.from_pretrained``: ``revision``
    (branch, tag or commit), ``cache_dir``, ``force_download``, ``local_files_only`` (the cache
    only, no request; also what ``HF_HUB_OFFLINE=1`` does) and ``token`` (private repos).

    Example:
        >>> resolve_protector_path(".").is_dir()
        True
    """
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        with no_token_in_errors(token if isinstance(token, str) else None):
            local = snapshot_download(str(path), repo_type="model", revision=revision, cache_dir=cache_dir,
                                      force_download=force_download, local_files_only=local_files_only,
                                      token=token, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(
            f"{str(path)!r} is not a local protector directory, and the Hub model repo {str(path)!r} "
            f"(revision {revision or 'main'!r}) is not in the local cache"
            f"{f' {cache_dir}' if cache_dir else ''}, which is all that local_files_only=True (or HF_HUB_OFFLINE=1) "
            "reads. Load it once with network access, or pass the directory it was saved to."
        ) from e
    except (HfHubHTTPError, HFValidationError, EntryNotFoundError) as e:  # a wrong token stays HubAuthError
        raise FileNotFoundError(
            f"{str(path)!r} is neither a local protector directory nor a Hub model repo you can read "
            f"({type(e).__name__}). Check the path, or the repo id, the revision and that your token can read the "
            "private repo."
        ) from e
    return Path(local)


#: What to check after a Hub authentication error; the command line prints it as its ``hint:`` line.
HUB_TOKEN_HINT = "check the Hub token (--token or HF_TOKEN) and the repo id"


class HubAuthError(PermissionError):
    """The Hub refused the token (401/403); the message ends with :data:`HUB_TOKEN_HINT`."""

    exit_code = 2  # bad input on the command line


class PublicProtectorError(PermissionError):
    """A protector push would make the protector public; nothing was pushed."""

    exit_code = 1


# ---------------------------------------------------------------------------- protector repos
_WHY_SECRET = ("a protector is a secret: whoever holds it can subtract the perturbations and undo the protection "
               "of every image it protected")


def push_protector(save: Callable[[Path], object], repo_id: str, *, method: str, private: bool = True,
                   allow_public: bool = False, token: str | None = None, branch: str | None = None,
                   create_pr: bool = False, commit_message: str | None = None) -> CommitInfo:
    """Push the files ``save(directory)`` writes to a **private** Hub model repo, in one commit;
    returns its ``huggingface_hub.CommitInfo`` (``.commit_url``, ``.oid``, ``.pr_url``).

    A protector undoes the protection of every image it protected, so the repo is created
    private, and a push that would leave it public (``private=False``, or an existing public
    repo) is refused before anything is written unless ``allow_public=True`` is passed
    explicitly. ``branch`` is created if missing; ``create_pr`` opens a pull request instead.
    ``method`` names the protector on the repo's card.

    Example:
        >>> push_protector(uc_protect.save_pretrained, "me/pets-protector", method="UC")  # doctest: +SKIP
        >>> load_protector("me/pets-protector")  # doctest: +SKIP
    """
    if not private and not allow_public:
        raise PublicProtectorError(
            f"Refusing to push the protector to a public repo: {_WHY_SECRET}. Keep private=True (the default). If "
            "you really want it public, pass allow_public=True as well."
        )
    if not private:
        logger.warning("Pushing the protector to a PUBLIC repo %s (allow_public=True): %s.", repo_id, _WHY_SECRET)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with no_token_in_errors(token):
        repo_id = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True).repo_id
        if not api.repo_info(repo_id, repo_type="model").private and not allow_public:
            raise PublicProtectorError(
                f"Refusing to push the protector to {repo_id}: that model repo already exists and is public, and "
                f"{_WHY_SECRET}. Push to a new repo id, or make this one private first "
                f"(HfApi().update_repo_settings({repo_id!r}, private=True))."
            )
        if branch is not None:
            api.create_branch(repo_id, branch=branch, repo_type="model", exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            save(Path(tmp))
            Path(tmp, PROTECTOR_CARD_NAME).write_text(protector_card(method), encoding="utf-8")
            commit = api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model", revision=branch,
                                       create_pr=create_pr,
                                       commit_message=commit_message or "Upload Unlearnable Clusters protector")
    logger.info("Pushed the protector to %s model repo %s: %s", "private" if private else "PUBLIC", repo_id,
                commit.pr_url or commit.commit_url)
    return commit


def protector_card(method: str) -> str:
    """The model card (``README.md``) of a protector repo: what it is, and to keep it private.

    Example:
        >>> "keep this repository private" in protector_card("UC")
        True
    """
    return f"""---
library_name: uc-datasets
tags:
- unlearnable-clusters
- protector
---
# Unlearnable Clusters protector ({method}) - keep this repository private

This repository holds a fitted uc-datasets protector: the per-cluster perturbations and
cluster centres. Whoever can read it can undo the protection of every image it protected.
Do not make it public and do not copy it into the dataset repository.

Load it with `uc_datasets.load_protector("<this repo id>")`.
"""


class no_token_in_errors:
    """Re-raise any error whose message contains ``token`` with the token masked; a 401/403 from the
    Hub becomes :class:`HubAuthError` (one line plus :data:`HUB_TOKEN_HINT`).

    Example:
        >>> with no_token_in_errors("hf_secret"):  # doctest: +SKIP
        ...     HfApi(token="hf_secret").whoami()
    """

    def __init__(self, token: str | None):
        self.token = token

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        from huggingface_hub.errors import HfHubHTTPError

        text = str(exc).replace(self.token, "***") if self.token else str(exc)
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(exc, HfHubHTTPError) and status in (401, 403):
            first = text.strip().splitlines()[0] if text.strip() else f"HTTP {status}"
            raise HubAuthError(f"{first}\nhint: {HUB_TOKEN_HINT}") from None
        if not self.token or self.token not in str(exc):
            return False
        raise RuntimeError(f"{exc_type.__name__}: {text}") from None
