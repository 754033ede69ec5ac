"""uc_datasets: make Hugging Face image datasets unlearnable with Unlearnable Clusters.

Example:
    >>> from uc_datasets import UnlearnableClusters, load_protector  # doctest: +SKIP
    >>> uc_protect = UnlearnableClusters(surrogate="efficientnet-lite0", n_clusters=10).fit(ds)  # doctest: +SKIP
    >>> protected = ds.map(uc_protect, batched=True)  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .config import UCConfig  # noqa: E402
from .protector import UCProtector, load_protector  # noqa: E402
from .surrogates import load_surrogate  # noqa: E402
from .unlearnable_clusters import UnlearnableClusters  # noqa: E402
from .verify import VerifyReport, verify  # noqa: E402

__all__ = ["UCConfig", "UCProtector", "UnlearnableClusters", "VerifyReport", "__version__", "load_protector",
           "load_surrogate", "verify"]
