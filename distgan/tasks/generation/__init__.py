"""The generation task: unconditional and conditional GANs (``task.py``), their step (``step.py``) and
evaluation by FID, KID, precision/recall and class accuracy (``evaluation.py``)."""
