"""Unlearnability: test accuracy, its majority-class chance level and a protection score."""

import logging
from collections import Counter

import datasets
import evaluate

logger = logging.getLogger("uc_datasets.evaluation.metrics.unlearnability")  # evaluate loads us under a hashed module name

_DESCRIPTION = """
Scores how unlearnable a protected training set is, from a victim's predictions on the clean
test set (relabelled the way the victim was trained).

- accuracy: fraction of test predictions equal to the references.
- chance: the majority-class chance level, max_c count(reference == c) / N, i.e. the
  accuracy of always predicting the most frequent test class.
- protection_score = (accuracy - chance) / (clean_accuracy - chance), where clean_accuracy is
  the accuracy of the same victim trained on the clean data. 0 means the victim trained on
  protected data learned nothing beyond chance; 1 means the protection did nothing. It is
  None when clean_accuracy is not given or is not above chance (the score is undefined).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels of the victim trained on protected data.
    references (list of int): true (relabelled) test labels.
    clean_accuracy (float, optional): accuracy of the victim trained on clean data, in [0, 1].

Returns:
    accuracy (float), chance (float), protection_score (float or None).

Examples:
    >>> import evaluate
    >>> from uc_datasets.evaluation.metrics import UNLEARNABILITY_METRIC_PATH
    >>> metric = evaluate.load(UNLEARNABILITY_METRIC_PATH)
    >>> metric.compute(predictions=[0, 0, 1, 1], references=[0, 0, 0, 1], clean_accuracy=1.0)
    {'accuracy': 0.75, 'chance': 0.75, 'protection_score': 0.0}
    >>> metric.compute(predictions=[0, 1, 2, 2, 0], references=[0, 1, 2, 2, 1], clean_accuracy=0.8)["chance"]
    0.4
"""

_CITATION = """
@inproceedings{zhang2023unlearnable,
  title={Unlearnable Clusters: Towards Label-agnostic Unlearnable Examples},
  author={Zhang, Jiaming and Ma, Xingjun and Yi, Qi and Sang, Jitao and Jiang, Yu-Gang
          and Wang, Yaowei and Xu, Changsheng},
  booktitle={CVPR},
  year={2023}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Unlearnability(evaluate.Metric):
    """Accuracy, majority-class chance and protection score of a victim on the clean test set."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://arxiv.org/abs/2301.01217"],
        )

    def _compute(self, predictions, references, clean_accuracy=None):
        if len(references) == 0:
            raise ValueError("No test examples: the clean test split is empty.")
        correct = sum(int(p == r) for p, r in zip(predictions, references))
        accuracy = correct / len(references)
        chance = max(Counter(references).values()) / len(references)
        protection_score = None
        if clean_accuracy is not None:
            if not 0.0 <= float(clean_accuracy) <= 1.0:
                raise ValueError(f"clean_accuracy must be a fraction in [0, 1]; got {clean_accuracy}.")
            if float(clean_accuracy) > chance:
                protection_score = (accuracy - chance) / (float(clean_accuracy) - chance)
            else:
                logger.warning(
                    "clean_accuracy %.4f is not above chance %.4f: the protection score is undefined.",
                    clean_accuracy,
                    chance,
                )
        return {"accuracy": accuracy, "chance": chance, "protection_score": protection_score}
