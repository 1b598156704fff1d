"""The super-resolution task: SRGAN/ESRGAN (``task.py``), the content + adversarial step (``step.py``), LR/HR
data (``data.py``, ``batches.py``), PSNR/SSIM validation (``validation.py``) and tiled upscaling
(``upscale.py``)."""
