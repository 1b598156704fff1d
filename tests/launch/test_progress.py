"""The driver's console line shows what each kind of run reports, and losing it never stops a run."""

import logging

from distgan.launch.progress import ForwardReports, format_line


def test_generation_line_shows_both_players_and_scores():
    line = format_line("run", {"step": 50, "loss_d": 1.2, "loss_g": 0.7, "d_real": 0.3, "d_fake": -0.2,
                               "fid": 3.25}, total=100, elapsed=10.0, start_step=0)
    assert "loss_d 1.200 loss_g 0.7" in line and "D(G(z)) -0.20" in line and "fid 3.25" in line
    assert "ETA 0m10s" in line


def test_super_resolution_line_shows_content_loss_and_psnr_against_bicubic():
    psnr_stage = format_line("sr", {"step": 10, "loss_g": 0.0557, "loss_pixel": 0.0557, "psnr": 28.88,
                                    "psnr_bicubic": 28.06}, total=20, elapsed=5.0, start_step=0)
    assert "loss_g 0.0557 | pixel 0.0557" in psnr_stage and "psnr 28.88 psnr_bicubic 28.06" in psnr_stage
    assert "loss_d" not in psnr_stage
    gan_stage = format_line("sr", {"step": 10, "loss_d": 1.3, "loss_g": 0.00061, "d_real": 0.1, "d_fake": -0.1,
                                   "loss_pixel": 0.055}, total=20, elapsed=5.0, start_step=0)
    assert "loss_g 0.00061" in gan_stage and "pixel 0.055" in gan_stage


def test_the_line_shows_the_lazy_regularizers_when_they_ran_and_ada_s_p():
    record = {"step": 8, "loss_d": 1.0, "loss_g": 1.0, "d_real": 0.0, "d_fake": 0.0, "ada_p": 0.0421}
    assert "reg_" not in format_line("sg2", record, total=10, elapsed=1.0, start_step=0)
    line = format_line("sg2", {**record, "reg_d": 0.0123, "reg_g": 3.5}, total=10, elapsed=1.0, start_step=0)
    assert "| reg_d 0.0123 reg_g 3.5 | ada p 0.042 |" in line


def test_the_line_shows_each_engines_learning_rate():
    both = format_line("run", {"step": 5, "loss_d": 1.0, "loss_g": 1.0, "d_real": 0.0, "d_fake": 0.0, "lr_g": 1e-4,
                               "lr_d": 5e-5}, total=10, elapsed=1.0, start_step=0)
    assert "lr 0.0001/5e-05" in both
    assert "| lr 0.0002 |" in format_line("sr", {"step": 5, "loss_g": 0.05, "lr_g": 2e-4}, total=10, elapsed=1.0,
                                          start_step=0)


class GoneQueue:
    """Stands in for a Ray queue whose actor died with its node: every put raises, as Ray's handle does.
    (The elastic cluster test loses a node for real; this checks the callback alone, in-process.)"""

    def __init__(self):
        self.puts = 0

    def put_nowait(self, item):
        self.puts += 1
        raise RuntimeError("The actor died because its node has died.")


def test_a_lost_progress_queue_is_forgiven_once_and_not_tried_again(caplog):
    queue = GoneQueue()
    forward = ForwardReports(queue)
    with caplog.at_level(logging.WARNING, logger="distgan.launch.progress"):
        for step in (2, 4, 6):
            forward.after_report(None, [{"step": step}], None)  # raising here would end the run in Ray Train
    assert queue.puts == 1 and forward.lost
    assert len(caplog.records) == 1 and "the run goes on" in caplog.records[0].getMessage()
