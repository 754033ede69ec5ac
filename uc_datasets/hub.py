"""Publish protected datasets to the Hugging Face Hub, and keep protectors private.

Two directions, kept apart on purpose:

- :func:`push_protected` publishes a *protected* dataset (a ``Dataset`` or ``DatasetDict``)
  as PNG images inside parquet shards, with a dataset card that says it is protected, in
  **one commit** (data, ``dataset_info`` and card together, so no revision of the repo holds
  the images without the card). It first runs :func:`uc_datasets.core.verify` against the
  clean dataset and refuses to push if any image breaks the epsilon bound or was left
  unprotected, and it refuses datasets that still carry protector data (cluster/perturbation
  columns, protector files).
- :func:`~uc_datasets.core.protector_hub.push_protector` (``protector.push_to_hub``) stores the
  protector, a secret that undoes the protection, in a **private** model repo; a public push
  needs an explicit ``allow_public=True``. Nothing from the protector goes into the dataset repo.

The card's metadata is ``huggingface_hub.DatasetCardData``'s standard fields (``pretty_name``,
``source_datasets``, ``tags``, ``task_categories`` copied from the source dataset's card) plus
one key of our own, :data:`CARD_KEY` (``uc_datasets``), which holds the protection record of
every split. :func:`write_protected_card` writes the same card into a ``save_to_disk`` directory.

Tokens are passed through to ``huggingface_hub`` and never logged, written to the card or
the run summary, or put in error messages.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, DatasetCardData, HfApi, RepoFile
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from uc_datasets._version import __version__
from uc_datasets.core.config import as_epsilon
from uc_datasets.core.progress import progress_enabled
from uc_datasets.core.protector_hub import no_token_in_errors
from uc_datasets.core.record import protection_record, public_surrogate_name
from uc_datasets.core.verify import VerifyReport, verify
from uc_datasets.methods.uc.protector import uc_method_name

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

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
#: The one dataset-card metadata key of uc-datasets: ``{"protected": True, "splits": {split: record}}``,
#: a record per split (``config/split`` for a config other than ``default``) with method,
#: surrogate, epsilon, epsilon_levels, n_clusters, uc_datasets_version, n_images, max_deviation,
#: passed, verify (the summary line), psnr_db and ssim.
CARD_KEY = "uc_datasets"
#: Tags added to the card (``DatasetCardData.tags``), so that protected sets can be found on the Hub.
CARD_TAGS = ("unlearnable", "protected", "unlearnable-clusters")
#: ``datasets``' default parquet shard size.
DEFAULT_SHARD_SIZE = "500MB"
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
    commit_url: str  # the one commit that holds the data and the card
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
    source_dataset: str | None = None,
    pretty_name: str | None = None,
    private: bool = True,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    max_shard_size: int | str | None = None,
    commit_message: str | None = None,
    progress: bool | None = None,
) -> PushResult:
    """Verify ``protected`` against ``clean``, then push it with its card to a Hub dataset repo, in one commit.

    Every protected image must be stored losslessly (PNG), keep its size and mode, differ
    from its clean original by at most ``ceil(epsilon * 255)`` levels and differ at all;
    otherwise nothing is pushed and :class:`ProtectionCheckError` names the images. The
    method, surrogate, epsilon and number of clusters come from ``protector`` or from the
    explicit arguments. ``private`` (default True, as on the command line and in the recipe)
    applies when the repo is created; an existing repo keeps its visibility. ``config_name``,
    ``revision`` (a branch, created from ``main`` if missing), ``create_pr``, ``max_shard_size``
    and ``commit_message`` mean what they mean in ``datasets``' ``push_to_hub``, and the shards
    are laid out as it lays them out (``data/{split}-00000-of-0000N.parquet``).

    The card keeps what the repo's card already has (license, text, other splits) and gains the
    standard metadata (``pretty_name``, ``source_datasets``, ``tags``; ``task_categories`` from
    the card of ``source_dataset``, the clean set's Hub id, where it has them), the protection
    record under :data:`CARD_KEY` and a protection section. ``progress`` None follows
    ``HF_HUB_DISABLE_PROGRESS_BARS`` (:func:`~uc_datasets.core.progress.progress_enabled`).

    Example:
        >>> protected = ds.map(uc_protect, batched=True)  # doctest: +SKIP
        >>> push_protected(protected, "me/pets-protected", clean=ds, protector=uc_protect,
        ...                source_dataset="timm/oxford-iiit-pet")  # doctest: +SKIP
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
    max_shard_bytes = _size_in_bytes(max_shard_size)
    show = progress_enabled(progress)

    reports = {name: verify(clean_splits[name], ds, info["epsilon"], image_column=image_column, progress=show)
               for name, ds in prot_splits.items()}
    _refuse_failed(reports, repo_id)

    api = HfApi(token=token)
    with no_token_in_errors(token):
        _refuse_protector_files_on_hub(api, repo_id, revision)
        source = _source_card_data(source_dataset, token=token)

        def edit(card: DatasetCard) -> None:
            protected_card(card, info=info, reports=reports, config_name=config_name, source=source,
                           source_dataset=source_dataset, pretty_name=pretty_name,
                           default_name=repo_id.split("/")[-1])

        commit = _push_splits(api, repo_id, prot_splits, edit_card=edit, config_name=config_name, private=private,
                              revision=revision, create_pr=create_pr, max_shard_bytes=max_shard_bytes,
                              commit_message=commit_message or "Upload protected dataset (uc-datasets)",
                              progress=show)
    target = commit.pr_revision if create_pr and commit.pr_revision else (revision or "main")
    logger.info("Pushed %d protected split(s) to %s (%s) in one commit: %s", len(reports), repo_id, target,
                commit.commit_url)
    return PushResult(repo_id=repo_id, revision=target, commit_url=commit.commit_url,
                      pr_url=commit.pr_url if create_pr else None, method=info["method"],
                      surrogate=info["surrogate"], epsilon=info["epsilon"], n_clusters=info["n_clusters"],
                      uc_datasets_version=__version__,
                      splits={_split_key(config_name, n): r.to_dict() for n, r in reports.items()})


def write_protected_card(directory: str | Path, protector: BaseProtector,
                         reports: VerifyReport | Mapping[str, VerifyReport], *, split: str = "train",
                         config_name: str = "default", source_dataset: str | None = None,
                         pretty_name: str | None = None, token: str | None = None) -> Path:
    """Write (or update) the dataset card ``README.md`` of a protected ``save_to_disk`` directory.

    The card is the one :func:`push_protected` writes (standard metadata, :data:`CARD_KEY`, the
    protection section) from ``protector`` and the verify ``reports`` (one report: the split
    ``split``; or ``{split: report}``). An existing ``README.md`` there keeps its text and
    metadata. ``source_dataset`` (a Hub id) lends its ``task_categories``; nothing is requested
    from the Hub without it. Returns the card's path.

    Example:
        >>> protected.save_to_disk("out/protected")  # doctest: +SKIP
        >>> write_protected_card("out/protected", uc_protect, report)  # doctest: +SKIP
        PosixPath('out/protected/README.md')
    """
    path = Path(directory) / "README.md"
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} is not a directory; save the protected dataset there first "
                                "(protected.save_to_disk(...)).")
    reports = {split: reports} if isinstance(reports, VerifyReport) else dict(reports)
    card = DatasetCard(path.read_text(encoding="utf-8")) if path.is_file() else _empty_card()
    with no_token_in_errors(token):
        source = _source_card_data(source_dataset, token=token)
    protected_card(card, info=_protection_info(protector, epsilon=None, method=None, surrogate=None, n_clusters=None),
                   reports=reports, config_name=config_name, source=source, source_dataset=source_dataset,
                   pretty_name=pretty_name, default_name=Path(directory).resolve().name)
    path.write_text(str(card), encoding="utf-8")
    logger.info("Wrote the dataset card %s", path)
    return path


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


def protected_card(card: DatasetCard, *, info: Mapping, reports: Mapping[str, VerifyReport],
                   config_name: str = "default", source: DatasetCardData | None = None,
                   source_dataset: str | None = None, pretty_name: str | None = None,
                   default_name: str = "dataset") -> DatasetCard:
    """Edit ``card`` in place into the card of a protected dataset, and return it.

    Through ``card.data`` (a ``huggingface_hub.DatasetCardData``): ``pretty_name`` (kept if the
    card has one, else ``pretty_name``, else the source's or ``default_name`` plus
    "(protected)"), ``source_datasets`` (+ ``source_dataset``), ``tags`` (+ :data:`CARD_TAGS`),
    ``task_categories`` (the source card's, when the card has none), and :data:`CARD_KEY` with
    one record per split of ``reports``; the text gains (or updates) the protection section.

    Example:
        >>> card = protected_card(_empty_card(), info=info, reports={"train": report})  # doctest: +SKIP
        >>> card.data["tags"]  # doctest: +SKIP
        ['unlearnable', 'protected', 'unlearnable-clusters']
    """
    data: DatasetCardData = card.data
    src_name = source.pretty_name if source is not None else None
    data.pretty_name = data.pretty_name or pretty_name or f"{src_name or default_name} (protected)"
    if source_dataset is not None:
        data.source_datasets = _merged(data.source_datasets, [source_dataset])
    data["tags"] = _merged(data.get("tags"), CARD_TAGS)
    if not data.task_categories and source is not None and source.task_categories:
        data.task_categories = list(source.task_categories)
    record = dict(data.get(CARD_KEY) or {})
    splits = dict(record.get("splits") or {})
    for name, r in reports.items():
        splits[_split_key(config_name, name)] = {
            "method": info["method"], "surrogate": info["surrogate"], "epsilon": info["epsilon"],
            "epsilon_levels": r.epsilon_levels, "n_clusters": info["n_clusters"],
            "uc_datasets_version": __version__, "n_images": r.n_images, "max_deviation": r.max_deviation,
            "passed": r.passed, "verify": r.summary(), "psnr_db": r.psnr, "ssim": r.ssim,
        }
    data[CARD_KEY] = {"protected": True, "splits": dict(sorted(splits.items()))}
    card.text = _with_section(card.text, render_card_section(data[CARD_KEY]["splits"]))
    return card


def _empty_card() -> DatasetCard:
    """A card with an empty metadata block (``DatasetCard("")`` warns that it has none)."""
    return DatasetCard("---\n{}\n---\n")


def _merged(existing: object, new: object) -> list:
    """``existing`` (a list, a string or None) followed by the items of ``new`` it lacks."""
    out = [existing] if isinstance(existing, str) else list(existing or [])
    return out + [v for v in new if v not in out]


def _source_card_data(source_dataset: str | None, *, token: str | None) -> DatasetCardData | None:
    """The card metadata of the Hub dataset ``source_dataset``, or None (no id, a local path, no card, no access)."""
    if source_dataset is None or Path(source_dataset).exists():
        return None
    try:
        return DatasetCard.load(source_dataset, repo_type="dataset", token=token).data
    except (HfHubHTTPError, HFValidationError, EntryNotFoundError, OSError, ValueError) as err:
        logger.info("No card metadata from the source dataset %s (%s): task_categories are not copied",
                    source_dataset, type(err).__name__)
        return None


def _size_in_bytes(size: int | str | None) -> int:
    """``max_shard_size`` in bytes: an int, or a string with a unit as ``datasets`` reads it ("500MB", "1GiB").

    Example:
        >>> _size_in_bytes("20KB"), _size_in_bytes("1MiB"), _size_in_bytes(None)
        (20000, 1048576, 500000000)
    """
    size = DEFAULT_SHARD_SIZE if size is None else size
    if isinstance(size, int) and size > 0:
        return size
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]I?B)\s*", str(size).upper())
    if not match:
        raise ValueError(f"max_shard_size={size!r} is not a size: pass bytes (an int) or a number with a unit, "
                         "e.g. '500MB' or '1GiB'.")
    n, unit = int(match.group(1)), match.group(2)
    base = 1024 if "I" in unit else 1000
    return n * base ** ("KMGT".index(unit[0]) + 1)


def _push_splits(api: HfApi, repo_id: str, splits: Mapping[str, datasets.Dataset], *,
                 edit_card: Callable[[DatasetCard], None], config_name: str, private: bool, revision: str | None,
                 create_pr: bool, max_shard_bytes: int, commit_message: str, progress: bool) -> CommitInfo:
    """Push ``splits`` as parquet shards and the card (``edit_card`` of the repo's card) in **one** commit.

    The shards are uploaded first (LFS, not yet visible), then one commit adds them, the card
    (with ``dataset_info`` and ``configs`` for ``config_name``, as ``datasets`` writes them)
    and removes the split's older shards. ``datasets``' own ``push_to_hub`` commits its card
    itself, which would leave the images on the Hub for a commit without our card.
    """
    from datasets.info import DatasetInfosDict
    from datasets.table import embed_table_storage
    from tqdm.auto import tqdm

    try:
        repo_id = api.repo_info(repo_id, repo_type="dataset").id
    except RepositoryNotFoundError:
        repo_id = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr/"):
        api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    data_dir = "data" if config_name == "default" else config_name
    additions: list[CommitOperationAdd] = []
    split_infos: list[tuple[datasets.SplitInfo, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, ds in splits.items():
            n = max(1, math.ceil(_estimated_bytes(ds) / max_shard_bytes))
            num_bytes = uploaded = 0
            for i in tqdm(range(n), desc=f"Uploading {name} shards", disable=not progress):
                shard = ds.shard(num_shards=n, index=i, contiguous=True).with_format("arrow")
                shard = shard.map(embed_table_storage, batched=True, keep_in_memory=True)  # image files -> bytes
                local = Path(tmp, f"{name}-{i:05d}.parquet")
                shard.with_format(None).to_parquet(str(local))
                add = CommitOperationAdd(f"{data_dir}/{name}-{i:05d}-of-{n:05d}.parquet", str(local))
                api.preupload_lfs_files(repo_id, [add], repo_type="dataset", revision=revision, create_pr=create_pr)
                additions.append(add)
                num_bytes += shard.data.nbytes
                uploaded += local.stat().st_size
            split_infos.append((datasets.SplitInfo(name=name, num_bytes=num_bytes, num_examples=len(ds)), uploaded))

        parent = api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
        new = {a.path_in_repo for a in additions}
        before = _file_sizes(api, repo_id, parent, data_dir)
        stale = [f for f in before if f not in new and any(f.startswith(f"{data_dir}/{name}-") for name in splits)]
        kept = sum(size for f, size in before.items() if f not in new and f not in stale and f.endswith(".parquet"))
        card = _repo_card(api, repo_id, parent)
        infos = DatasetInfosDict.from_dataset_card_data(card.data)
        features = next(iter(splits.values())).features
        info = infos.get(config_name) or datasets.DatasetInfo(features=features, splits=datasets.SplitDict(),
                                                               download_size=0, dataset_size=0)
        if info.features is not None and info.features != features and set(info.splits or {}) - set(splits):
            raise ValueError(f"the features of the pushed split(s) differ from those of the repo's other splits "
                             f"{sorted(set(info.splits) - set(splits))} of config {config_name!r}: push them "
                             "together, or to another config_name.")
        info.features = features
        info.download_checksums = None
        for split_info, uploaded in split_infos:
            info.splits.pop(split_info.name, None)
            info.splits.add(split_info)
        info.dataset_size = sum(s.num_bytes or 0 for s in info.splits.values())
        info.download_size = kept + sum(u for _, u in split_infos)
        info.size_in_bytes = info.download_size + info.dataset_size
        DatasetInfosDict({config_name: info}).to_dataset_card_data(card.data)
        _set_data_files(card.data, config_name, data_dir, list(splits))
        edit_card(card)
        operations = [*additions, CommitOperationAdd("README.md", str(card).encode("utf-8")),
                      *(CommitOperationDelete(f) for f in stale)]
        return api.create_commit(repo_id, operations, repo_type="dataset", revision=revision, create_pr=create_pr,
                                 parent_commit=parent, commit_message=commit_message)


def _estimated_bytes(ds: datasets.Dataset) -> int:
    """The bytes of ``ds``'s rows in its arrow table (a selection counts its share), for the shard count."""
    total = len(ds.data)
    return ds.data.nbytes * len(ds) // total if total else 0


def _file_sizes(api: HfApi, repo_id: str, revision: str, folder: str) -> dict[str, int]:
    """``{path: size}`` of the files under ``folder`` of the repo at ``revision`` (empty if there is no such folder)."""
    try:
        entries = api.list_repo_tree(repo_id, path_in_repo=folder, recursive=True, repo_type="dataset",
                                     revision=revision)
        return {e.path: e.size for e in entries if isinstance(e, RepoFile)}
    except EntryNotFoundError:
        return {}


def _repo_card(api: HfApi, repo_id: str, revision: str) -> DatasetCard:
    """The repo's ``README.md`` at ``revision`` as a card (an empty one if there is none)."""
    try:
        path = api.hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision)
    except EntryNotFoundError:
        return _empty_card()
    return DatasetCard(Path(path).read_text(encoding="utf-8"))


def _set_data_files(data: DatasetCardData, config_name: str, data_dir: str, splits: list[str]) -> None:
    """``configs`` in ``data`` (the Hub's documented YAML): ``config_name`` lists ``{data_dir}/{split}-*`` for
    each of ``splits`` beside the splits it already had."""
    configs = [dict(c) for c in (data.get("configs") or [])]
    entry = next((c for c in configs if c.get("config_name") == config_name), None)
    if entry is None:
        entry = {"config_name": config_name, "data_files": []}
        configs.append(entry)
    files = entry.get("data_files") or []
    files = [f for f in (files if isinstance(files, list) else [files]) if not (isinstance(f, dict) and
                                                                                f.get("split") in splits)]
    entry["data_files"] = files + [{"split": name, "path": f"{data_dir}/{name}-*"} for name in splits]
    data["configs"] = configs


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


__all__ = ["CARD_KEY", "CARD_TAGS", "ProtectionCheckError", "ProtectorLeakError", "PushResult", "protected_card",
           "push_protected", "render_card_section", "write_protected_card"]
