"""Mode coverage on hand-placed points."""

from __future__ import annotations

import torch

from distgan.data.builtin import RING_STD, ring8_modes
from distgan.metrics.modes import mode_coverage


def test_points_on_the_modes_cover_all_of_them():
    centres = ring8_modes()
    points = centres.repeat_interleave(10, dim=0) + 2 * RING_STD * torch.tensor([0.6, 0.8])  # 2 std away
    result = mode_coverage(points, centres, RING_STD)
    assert result.modes_covered == 8 and result.near_share == 1.0 and result.per_mode == (10,) * 8


def test_far_points_and_thin_modes_do_not_count():
    centres = ring8_modes()
    near_two = torch.cat([centres[0].expand(60, 2), centres[3].expand(39, 2)])
    stray = (centres[5] + 4 * RING_STD).unsqueeze(0)  # 4 std away on each axis: not near
    one_on_six = centres[6].unsqueeze(0)  # near, but 1 of 101 is under min_share 2%
    result = mode_coverage(torch.cat([near_two, stray, one_on_six]), centres, RING_STD, min_share=0.02)
    assert result.modes_covered == 2
    assert result.per_mode == (60, 0, 0, 39, 0, 0, 1, 0)
    assert abs(result.near_share - 100 / 101) < 1e-12
