"""An independent judge of generated digits: an RBF SVM trained on the real 8x8 digits.

It never sees a GAN. Samples at any resolution are area-averaged back to 8x8
(the data's native size) and labelled; the classifier's held-out split gives
real digits to compare against. Platt-scaled SVM probabilities stay low far
from the real digits (noise and pixel-shuffled digits score 0% confident),
whereas a calibrated wrapper, logistic regression or an MLP give those
75-85%, which would make "confidently recognized" meaningless.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CONFIDENT = 0.8
"""A sample counts as recognized when the classifier gives its label at least this probability."""


def to_8x8(images: torch.Tensor) -> np.ndarray:
    """[N, 1, R, R] in [-1, 1] -> [N, 64] on the real digits' 0..16 scale."""
    unit = images.float().clamp(-1, 1).add(1).div(2)
    if unit.shape[-1] != 8:
        unit = F.adaptive_avg_pool2d(unit, 8)
    return (unit * 16.0).reshape(len(unit), 64).numpy()


@dataclass
class DigitClassifier:
    model: object
    x_test: np.ndarray
    """Held-out real digits [N, 64] (0..16) and their labels and indices into load_digits()."""
    y_test: np.ndarray
    test_index: np.ndarray

    @classmethod
    def fit(cls) -> "DigitClassifier":
        # scikit-learn is slow to import and only this judge needs it.
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from sklearn.svm import SVC

        digits = load_digits()
        x_train, x_test, y_train, y_test, _, test_index = train_test_split(
            digits.data, digits.target, np.arange(len(digits.data)), test_size=0.25, random_state=0,
            stratify=digits.target)
        with warnings.catch_warnings():  # scikit-learn 1.9 deprecates the flag, not the method
            warnings.simplefilter("ignore", FutureWarning)
            model = SVC(probability=True, random_state=0).fit(x_train, y_train)
        return cls(model, x_test, y_test, test_index)

    def held_out_accuracy(self) -> float:
        return float(self.model.score(self.x_test, self.y_test))

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [N, 10] for 8x8 digits on the 0..16 scale."""
        return self.model.predict_proba(x)

    def proba_images(self, images: torch.Tensor) -> np.ndarray:
        """Class probabilities for generator-style images [N, 1, R, R] in [-1, 1]."""
        return self.proba(to_8x8(images))


def requested_class_accuracy(probs: np.ndarray, requested: np.ndarray, num_classes: int = 10) -> list[float]:
    """Per class, the share of samples asked for that class that the classifier assigns to it."""
    hits = probs.argmax(1) == requested
    return [float(hits[requested == k].mean()) for k in range(num_classes)]
