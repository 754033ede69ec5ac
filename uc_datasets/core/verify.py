"""Check a protected dataset against its original: epsilon bound, coverage, losslessness, visual cost."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import datasets
import numpy as np

from uc_datasets.core.config import as_epsilon
from uc_datasets.core.imaging import ImageDecodeError, color_channels, image_to_array, load_native
from uc_datasets.core.progress import progress_enabled
from uc_datasets.core.visual import VisualCostStream, visual_cost
from uc_datasets.core.working_set import check_image_column, feature_mode, undecoded

__all__ = ["VerifyReport", "verify", "visual_cost"]

logger = logging.getLogger(__name__)

_LOSSLESS = {b"\x89PNG\r\n\x1a\n": "PNG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}
#: Each kind of violation, as the summary names it.
VIOLATION_KINDS = {
    "lossy": "not stored losslessly (re-encoded, e.g. as JPEG, which destroys the protection: publish PNG)",
    "size": "changed size or mode (resized or converted after protection: compare the same images)",
    "bound": "over the epsilon bound",
    "undecodable": "cannot be decoded",
}


@dataclass
class VerifyReport:
    """What :func:`verify` found. ``passed`` is True only if no image broke a rule."""

    n_images: int
    epsilon_levels: int
    max_deviation: int  # uint8 levels, over every pixel and channel of every image
    fraction_changed: float  # of all pixel values
    violations: list[dict] = field(default_factory=list)  # images over the bound / wrong size / lossy
    unchanged: list[int] = field(default_factory=list)  # images identical to their original
    # rows whose original cannot be decoded and whose protected copy is the same bytes (on_bad_image="keep"):
    # they hold no pixels a decoder reads, so they do not fail the check, but they are listed
    undecodable: list[int] = field(default_factory=list)
    # PSNR (dB) and SSIM against the originals: uc_datasets.core.visual.VisualCostStream.result()
    visual: dict = field(default_factory=dict)
    # mean |protected - clean| in uint8 levels over every compared colour value: a perturbation that lost
    # its amplitude (resampled, clipped) shows here, whatever its maximum
    mean_change_levels: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.violations and not self.unchanged

    @property
    def psnr(self) -> float | None:
        """Mean PSNR (dB) of the luminance over the changed images, or None if none was measured."""
        return self._mean("psnr")

    @property
    def ssim(self) -> float | None:
        """Mean SSIM of the luminance over the changed images, or None if none was measured."""
        return self._mean("ssim")

    def _mean(self, metric: str) -> float | None:
        return (self.visual.get(metric) or {}).get("luminance", {}).get("mean")

    def visual_summary(self) -> str:
        """The mean, 5th percentile and worst PSNR and SSIM of the luminance in one phrase ('' if not measured)."""
        if self.psnr is None:
            return ""
        p, s = self.visual["psnr"]["luminance"], self.visual["ssim"]["luminance"]
        return (f"PSNR {p['mean']:.2f} dB (5th percentile {p['p5']:.2f}, worst {p['worst']:.2f}), "
                f"SSIM {s['mean']:.4f} (5th percentile {s['p5']:.4f}, worst {s['worst']:.4f})")

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "psnr_db": self.psnr, "ssim": self.ssim}

    def violation_summary(self) -> str:
        """The violations counted by kind, each with what it means (``''`` without violations).

        Example:
            >>> VerifyReport(2, 8, 0, 0.0, violations=[{"index": 0, "kind": "lossy", "reason": "r"}]).violation_summary()
            '1 not stored losslessly (re-encoded, e.g. as JPEG, which destroys the protection: publish PNG)'
        """
        counts: dict[str, int] = {}
        for v in self.violations:
            counts[v.get("kind", "other")] = counts.get(v.get("kind", "other"), 0) + 1
        return "; ".join(f"{n} {VIOLATION_KINDS.get(kind, kind)}" for kind, n in counts.items())

    def summary(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        why = self.violation_summary()
        return (f"{verdict}: {self.n_images} images, max deviation {self.max_deviation}/255 "
                f"(bound {self.epsilon_levels}/255), mean change {self.mean_change_levels:.2f} levels, "
                f"{100 * self.fraction_changed:.1f}% of pixel values changed, "
                f"{len(self.violations)} violation(s){f' ({why})' if why else ''}, "
                f"{len(self.unchanged)} unprotected image(s)"
                + (f"; {self.visual_summary()}" if self.psnr is not None else "")
                + (f", {len(self.undecodable)} undecodable image(s) kept as they were: rows {self.undecodable[:20]}"
                   if self.undecodable else ""))


def verify(clean: datasets.Dataset, protected: datasets.Dataset, epsilon: float, *,
           image_column: str = "image", progress: bool | None = None, visual: bool = True) -> VerifyReport:
    """Compare ``protected`` with ``clean`` row by row.

    Every protected image must have the original's size, be stored losslessly (PNG/TIFF),
    and differ from the (mode-converted) original by at most ``ceil(epsilon * 255)`` uint8
    levels in every channel; images with no change at all are listed as unprotected. Both
    sides are compared as their columns decode them: an ``Image(mode="RGB")`` feature
    converts first. An original that cannot be decoded, published as the same bytes
    (``on_bad_image="keep"``), is listed under ``undecodable``.

    With ``visual`` (default) the report also holds the PSNR (dB) and SSIM of every image that
    kept its size and mode, against its original (:mod:`uc_datasets.core.visual`): mean, 5th
    percentile and worst image, of the luminance and of each colour channel, streamed row by
    row like the rest of the check, so memory does not grow with the dataset.

    Example:
        >>> report = verify(ds, ds.map(uc_protect, batched=True), 16 / 255)  # doctest: +SKIP
        >>> report.passed, report.max_deviation  # doctest: +SKIP
        (True, 16)
    """
    from tqdm.auto import tqdm

    epsilon = as_epsilon(epsilon)
    check_image_column(clean, image_column)
    check_image_column(protected, image_column)
    if len(clean) != len(protected):
        raise ValueError(f"clean has {len(clean)} rows but protected has {len(protected)}; verify compares "
                         "row by row, so pass the same split in the same order.")
    bound = math.ceil(epsilon * 255 - 1e-9)
    a_mode, b_mode = feature_mode(clean, image_column), feature_mode(protected, image_column)
    a_raw, b_raw = undecoded(clean, image_column), undecoded(protected, image_column)
    worst, changed, total, change_sum, colour_total = 0, 0, 0, 0, 0
    report = VerifyReport(len(clean), bound, 0, 0.0)
    stream = VisualCostStream() if visual else None
    for i in tqdm(range(len(clean)), desc="verifying", disable=not progress_enabled(progress)):
        a_val, b_val = a_raw[i][image_column], b_raw[i][image_column]
        try:
            a = load_native(a_val, index=i, image_column=image_column, max_pixels=2**62, mode=a_mode)
        except ImageDecodeError:
            same = _bytes(a_val) is not None and _bytes(a_val) == _bytes(b_val)
            if same:
                report.undecodable.append(i)
            else:
                report.violations.append({"index": i, "kind": "undecodable",
                                          "reason": "the original cannot be decoded and the protected copy is not the "
                                                    "same bytes"})
            continue
        if _format(b_val) is None:
            report.violations.append({"index": i, "kind": "lossy", "reason": "not stored losslessly (expected PNG)"})
            continue
        try:
            b = load_native(b_val, index=i, image_column=image_column, max_pixels=2**62, mode=b_mode)
        except ImageDecodeError:
            report.violations.append({"index": i, "kind": "undecodable", "reason": "the protected image cannot be decoded"})
            continue
        if a.size != b.size or a.mode != b.mode:
            report.violations.append({"index": i, "kind": "size",
                                      "reason": f"size/mode changed: {a.size} {a.mode} -> {b.size} {b.mode}"})
            continue
        a_arr, b_arr = image_to_array(a), image_to_array(b)
        diff = np.abs(a_arr.astype(np.int16) - b_arr.astype(np.int16))
        if stream is not None:
            stream.add(a_arr, b_arr, index=i)
        dev = int(diff.max()) if diff.size else 0
        worst = max(worst, dev)
        n_changed = int((diff > 0).sum())
        changed += n_changed
        total += diff.size
        colour = diff[..., : color_channels(a.mode)]  # alpha is copied bit-exact: not part of the change
        change_sum += int(colour.sum())
        colour_total += colour.size
        if dev > bound:
            report.violations.append({"index": i, "kind": "bound", "reason": f"deviation {dev} > {bound} levels"})
        elif n_changed == 0:
            report.unchanged.append(i)
    report.max_deviation = worst
    report.fraction_changed = changed / max(total, 1)
    report.mean_change_levels = change_sum / max(colour_total, 1)
    report.visual = stream.result() if stream is not None else {}
    if report.undecodable:
        logger.warning("%d original image(s) cannot be decoded and were kept as they were: rows %s",
                       len(report.undecodable), report.undecodable[:20])
    logger.info(report.summary())
    return report


def _bytes(value: object) -> bytes | None:
    """The stored bytes of an undecoded image value (read from its path if needed)."""
    if not isinstance(value, dict):
        return None
    if value.get("bytes") is not None:
        return bytes(value["bytes"])
    if value.get("path"):
        with open(value["path"], "rb") as f:
            return f.read()
    return None


def _format(value: object) -> str | None:
    """``"PNG"``/``"TIFF"`` for lossless encoded bytes, None otherwise."""
    data = value.get("bytes") if isinstance(value, dict) else None
    if data is None and isinstance(value, dict) and value.get("path"):
        with open(value["path"], "rb") as f:
            data = f.read(8)
    if not data:
        return None
    for magic, name in _LOSSLESS.items():
        if bytes(data[: len(magic)]) == magic:
            return name
    return None
