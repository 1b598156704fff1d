"""Do a digits generator's samples look like digits? An independent check.

A classifier that never saw the GAN (an RBF SVM from scikit-learn, trained on
three quarters of the real 8x8 digits) labels generated samples after they are area-averaged
back to 8x8. It prints, for the samples: the share the classifier labels
confidently, the share of each class, and the same figures for the real held-out
digits, for noise and for held-out digits with their pixels shuffled, so the
numbers have a scale.

    python benchmarks/digits_quality.py runs/NAME [--n 2000] [--seed 0]

For a conditional generator it asks for every class in turn and reports, per
class, how often the classifier sees the class that was requested.

Exit status 1 when a class holds under MIN_CLASS_SHARE of the samples or
under MIN_CONFIDENT of them are labelled confidently, so a script can gate on
it. The bars are set far above noise (0% confident) and below real digits
(about 90%): they catch a collapsed or unconverged generator, not a mediocre one.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from _generator_args import load_from_args
from distgan.metrics.digits import CONFIDENT, DigitClassifier, requested_class_accuracy

MIN_CONDITIONAL_ACCURACY = 0.9
"""Conditional generators: share of each class's samples the classifier assigns to the requested class."""
MIN_CONFIDENT = 0.25
MIN_CLASS_SHARE = 0.02


def summarize(name: str, probs: np.ndarray) -> dict:
    labels = probs.argmax(1)
    confident = probs.max(1) >= CONFIDENT
    shares = np.bincount(labels, minlength=10) / len(labels)
    print(f"{name:>9}: confident {confident.mean():6.1%}   mean max prob {probs.max(1).mean():.3f}   "
          f"classes " + " ".join(f"{k}:{s:4.0%}" for k, s in enumerate(shares)))
    return {"confident": float(confident.mean()), "shares": shares}


def report_conditional(probs: np.ndarray, requested: np.ndarray) -> int:
    """A conditional generator: does the classifier see the class that was asked for?"""
    per_class = requested_class_accuracy(probs, requested)
    overall = float((probs.argmax(1) == requested).mean())
    print("requested class recognized: " + " ".join(f"{k}:{a:4.0%}" for k, a in enumerate(per_class))
          + f"   overall {overall:.1%}")
    worst = min(per_class)
    ok = worst >= MIN_CONDITIONAL_ACCURACY
    print("verdict:", f"every class at least {MIN_CONDITIONAL_ACCURACY:.0%}" if ok else
          f"NOT good enough: class {per_class.index(worst)} recognized in {worst:.0%}")
    return 0 if ok else 1


def main(argv=None) -> int:
    from distgan.config import DataConfig
    from distgan.data.builtin import load_digits as load_training_digits
    from distgan.persist.export import generate

    args, module, meta = load_from_args(argv, __doc__.splitlines()[0], "digits")
    clf = DigitClassifier.fit()
    print(f"classifier: RBF SVM on the other {1797 - len(clf.test_index)} real digits, "
          f"held-out accuracy {clf.held_out_accuracy():.1%}")
    conditional = bool(meta.get("num_classes"))
    labels = torch.arange(args.n) % 10 if conditional else None
    samples = generate(module, args.n, args.seed, labels=labels)
    rng = np.random.default_rng(args.seed)
    resolution = meta["data_shape"][-1]
    # The held-out digits as the GAN saw them (upsampled to its resolution), then back to 8x8.
    seen = load_training_digits(DataConfig(name="digits", resolution=resolution)).x[clf.test_index]
    summarize("real", clf.proba(clf.x_test))
    summarize(f"real {resolution}px", clf.proba_images(seen))
    summarize("noise", clf.proba(rng.uniform(0, 16, size=(args.n, 64))))
    summarize("shuffled", clf.proba(rng.permuted(clf.x_test, axis=1)))  # digit ink, no digit shape
    probs = clf.proba_images(samples)
    result = summarize(f"step {meta.get('step')}", probs)
    if conditional:
        return report_conditional(probs, labels.numpy())
    rare = [k for k, share in enumerate(result["shares"]) if share < MIN_CLASS_SHARE]
    ok = not rare and result["confident"] >= MIN_CONFIDENT
    print("verdict:", "recognizable digits, all ten classes" if ok else
          f"NOT recognizable (classes under {MIN_CLASS_SHARE:.0%}: {rare}, confident {result['confident']:.1%})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
