"""progress_enabled: an explicit progress= wins, else huggingface_hub's progress-bar setting."""

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

from uc_datasets.core import progress
from uc_datasets.core.progress import PROGRESS_GROUP, progress_enabled


@pytest.fixture
def bars_on():
    enable_progress_bars()
    yield
    enable_progress_bars()


def test_explicit_progress_wins(bars_on):
    assert progress_enabled(True) and not progress_enabled(False)
    disable_progress_bars()
    assert progress_enabled(True) and not progress_enabled(None)


def test_none_follows_the_global_and_our_group_switch(bars_on):
    assert progress_enabled(None) is True
    disable_progress_bars(PROGRESS_GROUP)  # ours only
    assert progress_enabled(None) is False
    enable_progress_bars(PROGRESS_GROUP)
    disable_progress_bars("huggingface_hub")  # another group's switch is not ours
    assert progress_enabled(None) is True


@pytest.mark.parametrize("value, expected", [("1", False), ("0", True)])
def test_none_follows_the_environment_variable(value, expected):
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": value, "PYTHONPATH": str(Path(progress.__file__).parents[2])}
    out = subprocess.run([sys.executable, "-c", "from uc_datasets.core.progress import progress_enabled as p; "
                          "print(p(None), p(True), p(False))"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(expected), "True", "False"]


def test_the_docstring_examples_run(bars_on):
    assert doctest.testmod(progress).failed == 0
