"""Publish protected datasets to the Hugging Face Hub, and keep protectors private.

Two directions, kept apart on purpose:

- :func:`push_protected` publishes a *protected* dataset (a ``Dataset`` or ``DatasetDict``)
  as PNG images inside parquet shards, with a dataset card that says it is protected. It
  first runs :func:`uc_datasets.core.verify` against the clean dataset and refuses to push if any
  image breaks the epsilon bound or was left unprotected, and it refuses datasets that
  still carry protector data (cluster/perturbation columns, protector files).
- :func:`push_protector` (``protector.push_to_hub``) stores the protector, a secret that
  undoes the protection, in a **private** model repo; a public push needs an explicit
  ``allow_public=True``. Nothing from the protector goes into the dataset repo.

Tokens are passed through to ``huggingface_hub`` and never logged, written to the card or
the run summary, or put in error messages.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from uc_datasets._version import __version__
from uc_datasets.core.config import as_epsilon
from uc_datasets.core.protector_hub import no_token_in_errors
from uc_datasets.core.record import protection_record, public_surrogate_name
from uc_datasets.core.verify import VerifyReport, verify
from uc_datasets.methods.uc.protector import uc_method_name

if TYPE_CHECKING:
    from uc_datasets.core.protector import BaseProtector

logger = logging.getLogger(__name__)

#: Column names that hold protector data (cluster ids, perturbations, centres): with them
#: anyone can estimate each cluster's perturbation and subtract it. Also any ``uc_*`` column.
PROTECTOR_COLUMNS = frozenset({
    "cluster", "clusters", "cluster_id", "cluster_ids", "cluster_label", "delta", "deltas", "perturbation",
    "perturbations", "protector", "centres", "centers", "permutation",
})
#: File names of a saved protector; they must never sit in (or next to) a dataset.
PROTECTOR_FILES = frozenset({"protector.safetensors"})
CARD_KEY = "uc_datasets"  # dataset-card YAML key holding the per-split protection record
CARD_TAGS = ("unlearnable-clusters", "protected-images")
SECTION_START = "<!-- uc-datasets:protection:start -->"
SECTION_END = "<!-- uc-datasets:protection:end -->"
_MAX_LISTED = 20


class ProtectionCheckError(ValueError):
    """Some images break the epsilon bound or were left unprotected; nothing was pushed."""

    exit_code = 1  # a failed check on the command line

    def __init__(self, message: str, reports: dict[str, VerifyReport]):
        super().__init__(message)
        self.reports = reports


class ProtectorLeakError(ValueError):
    """The dataset (or its target repo) carries protector data; nothing was pushed."""

    exit_code = 1


@dataclass
class PushResult:
    """What :func:`push_protected` pushed. Holds no credentials; safe to write to disk."""

    repo_id: str
    revision: str  # the branch or ``refs/pr/N`` the data and card went to
    commit_url: str
    pr_url: str | None
    method: str
    surrogate: str
    epsilon: float
    n_clusters: int
    uc_datasets_version: str
    splits: dict[str, dict] = field(default_factory=dict)  # split -> VerifyReport.to_dict()

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- protected datasets
def push_protected(
    protected: datasets.Dataset | datasets.DatasetDict,
    repo_id: str,
    *,
    clean: datasets.Dataset | datasets.DatasetDict,
    protector: BaseProtector | None = None,
    epsilon: float | None = None,
    method: str | None = None,
    surrogate: str | None = None,
    n_clusters: int | None = None,
    image_column: str = "image",
    split: str | None = None,
    config_name: str = "default",
    private: bool = True,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    max_shard_size: int | str | None = None,
    commit_message: str | None = None,
    progress: bool = True,
) -> PushResult:
    """Verify ``protected`` against ``clean``, then push it to a Hub dataset repo with a card.

    Every protected image must be stored losslessly (PNG), keep its size and mode, differ
    from its clean original by at most ``ceil(epsilon * 255)`` levels and differ at all;
    otherwise nothing is pushed and :class:`ProtectionCheckError` names the images. The
    method, surrogate, epsilon and number of clusters come from ``protector`` or from the
    explicit arguments. ``private`` (default True, as on the command line and in the recipe)
    applies when the repo is created; an existing repo keeps its visibility. It, ``revision``,
    ``create_pr``, ``token`` and ``max_shard_size`` go to ``datasets``' ``push_to_hub``. The dataset card keeps what the
    repo's card already has (license, text, other splits) and gains a protection section,
    written in a second commit on the same branch or pull request.

    Example:
        >>> protected = ds.map(uc_protect, batched=True)  # doctest: +SKIP
        >>> push_protected(protected, "me/pets-protected", clean=ds, protector=uc_protect)  # doctest: +SKIP
    """
    if repo_id.startswith("buckets/"):
        raise ValueError(f"{repo_id!r} is a storage bucket; push_protected needs a dataset repo (it writes a dataset "
                         "card), e.g. 'me/pets-protected'.")
    info = _protection_info(protector, epsilon=epsilon, method=method, surrogate=surrogate, n_clusters=n_clusters)
    prot_splits = _as_splits(protected, split, "protected")
    clean_splits = _as_splits(clean, split, "clean")
    if set(prot_splits) != set(clean_splits):
        raise ValueError(f"protected has splits {sorted(prot_splits)} but clean has {sorted(clean_splits)}; "
                         "pass the clean dataset the protected one was made from, with the same splits.")
    for name, ds in prot_splits.items():
        _refuse_protector_data(ds, name)

    reports = {name: verify(clean_splits[name], ds, info["epsilon"], image_column=image_column, progress=progress)
               for name, ds in prot_splits.items()}
    _refuse_failed(reports, repo_id)

    api = HfApi(token=token)
    with no_token_in_errors(token):
        _refuse_protector_files_on_hub(api, repo_id, revision)
        kwargs = dict(config_name=config_name, private=private, token=token, revision=revision, create_pr=create_pr,
                      max_shard_size=max_shard_size, commit_message=commit_message)
        if isinstance(protected, datasets.DatasetDict):
            commit = protected.push_to_hub(repo_id, **kwargs)
        else:
            (name, ds), = prot_splits.items()
            commit = ds.push_to_hub(repo_id, split=name, **kwargs)
        target = commit.pr_revision if create_pr and commit.pr_revision else (revision or "main")
        card_commit = _update_card(api, repo_id, target, parent=commit.oid, info=info, reports=reports,
                                   config_name=config_name)
    logger.info("Pushed %d protected split(s) to %s (%s): %s", len(reports), repo_id, target,
                card_commit.commit_url)
    return PushResult(repo_id=repo_id, revision=target, commit_url=card_commit.commit_url,
                      pr_url=commit.pr_url if create_pr else None, method=info["method"],
                      surrogate=info["surrogate"], epsilon=info["epsilon"], n_clusters=info["n_clusters"],
                      uc_datasets_version=__version__,
                      splits={_split_key(config_name, n): r.to_dict() for n, r in reports.items()})


def _protection_info(protector: BaseProtector | None, *, epsilon: float | None, method: str | None,
                     surrogate: str | None, n_clusters: int | None) -> dict:
    explicit = {"epsilon": epsilon, "method": method, "surrogate": surrogate, "n_clusters": n_clusters}
    if protector is not None:
        from_prot = {k: v for k, v in protection_record(protector).items() if k in explicit}
        explicit["surrogate"] = None if surrogate is None else public_surrogate_name(surrogate)
        clash = [k for k, v in explicit.items() if v is not None and not (
            math.isclose(v, from_prot[k], abs_tol=1e-9) if k == "epsilon" else v == from_prot[k])]
        if clash:
            raise ValueError(f"{', '.join(clash)} given explicitly differ from the protector's "
                             f"({', '.join(f'{k}={from_prot[k]!r}' for k in clash)}); pass only the protector.")
        return from_prot
    missing = [k for k in ("epsilon", "surrogate", "n_clusters") if explicit[k] is None]
    if missing:
        raise ValueError(f"without a protector, pass {', '.join(missing)} explicitly (they go on the dataset card "
                         "and epsilon is the bound checked before pushing), or pass protector=... "
                         "(load_protector(path) loads a saved one).")
    epsilon = as_epsilon(epsilon)
    if method is None:
        method = uc_method_name(clip="clip" in surrogate.lower(), label_aware=False)
    return {"epsilon": epsilon, "method": method, "surrogate": public_surrogate_name(surrogate),
            "n_clusters": int(n_clusters)}


def _as_splits(ds: datasets.Dataset | datasets.DatasetDict, split: str | None,
               what: str) -> dict[str, datasets.Dataset]:
    if isinstance(ds, datasets.DatasetDict):
        if split is not None:
            raise ValueError(f"split={split!r} only applies to a single Dataset; {what} is a DatasetDict, whose "
                             "split names are used.")
        return dict(ds)
    if isinstance(ds, datasets.Dataset):
        return {split or (str(ds.split) if ds.split is not None else "train"): ds}
    raise TypeError(f"{what} must be a datasets.Dataset or DatasetDict, got {type(ds).__name__}. "
                    "An IterableDataset cannot be verified row by row; materialise it first.")


def _refuse_protector_data(ds: datasets.Dataset, split: str) -> None:
    cols = [c for c in ds.column_names if c.lower() in PROTECTOR_COLUMNS or c.lower().startswith("uc_")]
    if cols:
        raise ProtectorLeakError(
            f"Refusing to push: split {split!r} has column(s) {cols} that look like protector data (cluster "
            "assignments, perturbations or centres). With them anyone can estimate each cluster's perturbation "
            f"and subtract it. Drop them first: protected = protected.remove_columns({cols!r})."
        )
    dirs = {Path(f["filename"]).parent for f in ds.cache_files}
    found = [str(d / name) for d in dirs for name in PROTECTOR_FILES if (d / name).exists()]
    if found:
        raise ProtectorLeakError(
            f"Refusing to push: split {split!r} is stored next to a protector ({', '.join(found)}). A protector "
            "must never sit with the data it protects. Move it to a private place (protector.push_to_hub pushes "
            "it to a private model repo) and save the dataset without it."
        )


def _refuse_failed(reports: dict[str, VerifyReport], repo_id: str) -> None:
    bad = {n: r for n, r in reports.items() if not r.passed}
    if not bad:
        return
    lines = []
    for name, r in bad.items():
        if r.violations:
            shown = ", ".join(f"row {v['index']} ({v['reason']})" for v in r.violations[:_MAX_LISTED])
            more = f" and {len(r.violations) - _MAX_LISTED} more" if len(r.violations) > _MAX_LISTED else ""
            lines.append(f"  split {name!r}: {len(r.violations)} image(s) break the bound or the format: {shown}{more}")
        if r.unchanged:
            shown = ", ".join(f"row {i}" for i in r.unchanged[:_MAX_LISTED])
            more = f" and {len(r.unchanged) - _MAX_LISTED} more" if len(r.unchanged) > _MAX_LISTED else ""
            lines.append(f"  split {name!r}: {len(r.unchanged)} image(s) left unprotected (identical to the "
                         f"original): {shown}{more}")
    raise ProtectionCheckError(
        f"Refusing to push to {repo_id}: the protected dataset fails verification against the clean one.\n"
        + "\n".join(lines)
        + "\nProtect these rows again with ds.map(protector, batched=True) and do not re-encode or edit protected "
        "images afterwards (JPEG re-encoding and resizing break the bound).",
        reports,
    )


def _refuse_protector_files_on_hub(api: HfApi, repo_id: str, revision: str | None) -> None:
    try:
        files = api.list_repo_files(repo_id, repo_type="dataset", revision=revision)
    except RevisionNotFoundError:  # a new branch: it starts from main
        files = api.list_repo_files(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return
    found = [f for f in files if Path(f).name in PROTECTOR_FILES]
    if found:
        raise ProtectorLeakError(
            f"Refusing to push: the dataset repo {repo_id} already holds protector file(s) {found}. Anyone who can "
            "read the repo can undo the protection. Delete them (HfApi().delete_file(path, repo_id, "
            "repo_type='dataset')), keep the protector in a private model repo (protector.push_to_hub), then "
            "push again. Deleted files stay in the git history: consider a new repo."
        )


# ---------------------------------------------------------------------------- dataset card
def _split_key(config_name: str, split: str) -> str:
    return split if config_name == "default" else f"{config_name}/{split}"


def _eps_text(eps: float) -> str:
    levels = eps * 255
    return f"{round(levels)}/255" if math.isclose(levels, round(levels), abs_tol=1e-6) else f"{eps:.6g}"


def _update_card(api: HfApi, repo_id: str, revision: str, *, parent: str, info: dict,
                 reports: dict[str, VerifyReport], config_name: str):
    try:
        path = hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=parent, token=api.token)
        card = DatasetCard(Path(path).read_text(encoding="utf-8"))
    except EntryNotFoundError:
        card = DatasetCard("---\n---\n")
    record = dict(card.data.get(CARD_KEY) or {})
    splits = dict(record.get("splits") or {})
    for name, r in reports.items():
        splits[_split_key(config_name, name)] = {
            "method": info["method"], "surrogate": info["surrogate"], "epsilon": info["epsilon"],
            "epsilon_levels": r.epsilon_levels, "n_clusters": info["n_clusters"],
            "uc_datasets_version": __version__, "n_images": r.n_images, "max_deviation": r.max_deviation,
            "passed": r.passed, "verify": r.summary(), "psnr_db": r.psnr, "ssim": r.ssim,
        }
    card.data[CARD_KEY] = {"protected": True, "splits": dict(sorted(splits.items()))}
    tags = list(card.data.get("tags") or [])
    card.data["tags"] = tags + [t for t in CARD_TAGS if t not in tags]
    card.text = _with_section(card.text, render_card_section(card.data[CARD_KEY]["splits"]))
    return api.create_commit(
        repo_id, [CommitOperationAdd("README.md", str(card).encode("utf-8"))], repo_type="dataset",
        revision=revision, parent_commit=parent,
        commit_message="Dataset card: images protected with Unlearnable Clusters (uc-datasets)",
    )


def render_card_section(splits: Mapping[str, Mapping]) -> str:
    """The dataset-card section describing the protection of each split (Markdown)."""
    rows = "\n".join(
        f"| `{name}` | {s['method']} | `{s['surrogate']}` | {_eps_text(float(s['epsilon']))} | {s['n_clusters']} | "
        f"{s['uc_datasets_version']} | {str(s['verify']).replace('|', '/')} |"
        for name, s in splits.items()
    )
    eps_max = max(int(s["epsilon_levels"]) for s in splits.values())
    return f"""{SECTION_START}
## Protected images (Unlearnable Clusters)

The images in this dataset are **protected**. Every image was changed by a small, bounded
perturbation (at most {eps_max}/255 per colour value, L-infinity) made with Unlearnable Clusters
(UC; Zhang et al., CVPR 2023) with the uc-datasets Python package. UC-CLIP is the
variant that uses a CLIP image encoder as the surrogate; UC uses another ImageNet-style encoder.

| split | method | surrogate | epsilon (L-inf) | clusters | uc-datasets | check against the originals |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

{visual_sentence(splits) or "The images were checked against their originals before publishing."}

Images are stored as PNG (lossless), at their original size. RGB, RGBA, grey (L) and grey +
alpha (LA) images keep their mode; palette (P) images were converted to RGB (RGBA with
transparency), CMYK, YCbCr, LAB and HSV images to RGB, and 1-bit images to grey (L), because
those modes cannot hold the perturbation.

### If you found this dataset

These pictures look normal, but they were altered very slightly on purpose so that image
classifiers trained on them learn little that works on ordinary photos. Looking at them, sharing
them or using them for other purposes is not affected. If you want to train a model on these
images, ask the dataset owner for the original, unprotected data. The protection is not
encryption or a watermark, and it is not guaranteed: the published research shows it lowers,
not removes, what a model can learn.
{SECTION_END}
"""


def visual_sentence(splits: Mapping[str, Mapping]) -> str:
    """One plain sentence with the mean PSNR and SSIM of the protected images ('' if not measured).

    Example:
        >>> visual_sentence({"train": {"psnr_db": 30.07, "ssim": 0.912}})
        'On average, a protected image differs from its original by a PSNR of 30.1 dB and an SSIM of 0.912 (train).'
    """
    known = {name: s for name, s in splits.items() if s.get("psnr_db") is not None and s.get("ssim") is not None}
    if not known:
        return ""
    values = "; ".join(f"a PSNR of {float(s['psnr_db']):.1f} dB and an SSIM of {float(s['ssim']):.3f} ({name})"
                       for name, s in known.items())
    return f"On average, a protected image differs from its original by {values}."


def _with_section(text: str, section: str) -> str:
    pattern = re.compile(re.escape(SECTION_START) + r".*?" + re.escape(SECTION_END) + r"\n?", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: section, text, count=1)
    body = text.lstrip("\n")
    return "\n" + section + ("\n" + body if body else "")


__all__ = ["ProtectionCheckError", "ProtectorLeakError", "PushResult", "push_protected", "render_card_section"]
