"""Protectors saved by an earlier version load and give pixel-identical output.

The fixtures (tests/fixtures/saved_protectors, written once by its make.py before the core
layer of issue 19 moved code) are a UC label-free, a UC label-aware and a sample-wise EMinN
protector with the images they were fitted on and what they produced then.
"""

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from uc_datasets import load_protector

FIXTURES = Path(__file__).parent / "fixtures" / "saved_protectors"
CASES = ("uc_label_free", "uc_label_aware", "eminn_samplewise")


@pytest.mark.parametrize("name", CASES)
def test_a_saved_protector_gives_the_same_pixels(name):
    d = FIXTURES / name
    prot = load_protector(d)
    inputs, labels, expected = (np.load(d / f) for f in ("inputs.npy", "labels.npy", "outputs.npy"))
    images = [Image.fromarray(a) for a in inputs]
    out = prot.protect_images(images, labels=labels.tolist() if prot.label_column else None)
    assert np.array_equal(np.stack([np.asarray(im) for im in out]), expected)
    # and through the map, as a user runs it
    ds = datasets.Dataset.from_dict({"image": images, "label": labels.tolist()}).cast_column("image", datasets.Image())
    mapped = ds.map(prot, batched=True, batch_size=5, load_from_cache_file=False)
    assert np.array_equal(np.stack([np.asarray(r["image"]) for r in mapped]), expected)
    assert not np.array_equal(expected, inputs)  # the fixture protects something


@pytest.mark.parametrize("name", CASES)
def test_loading_a_protector_and_protecting_images_imports_neither_datasets_nor_accelerate(name):
    import subprocess
    import sys

    code = ("import sys\nimport numpy as np\nfrom PIL import Image\nfrom uc_datasets import load_protector\n"
            f"d = {str(FIXTURES / name)!r}\n"
            "prot = load_protector(d)\n"
            "inputs, labels = np.load(d + '/inputs.npy'), np.load(d + '/labels.npy')\n"
            "prot.protect_images([Image.fromarray(a) for a in inputs],"
            " labels=labels.tolist() if prot.label_column else None)\n"
            "print(sorted(m for m in ('datasets', 'accelerate', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
