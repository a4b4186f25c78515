import math

import pytest
import torch
from torch import nn

from edvis.train import mosaic, quarter_logits, train_step


def ramp_images(n: int, size: int) -> torch.Tensor:
    """Image i: i·100 plus a ramp that is constant on each 2×2 block (block (y, x) holds
    y·size/2 + x), plus a ±0.25 checker that a 2×2 average cancels."""
    h = size // 2
    block = torch.arange(h * h, dtype=torch.float32).view(h, h).repeat_interleave(2, 0).repeat_interleave(2, 1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    checker = 0.25 * (-1.0) ** (yy + xx)
    base = block + checker  # (size, size)
    return torch.stack([(i * 100 + base).expand(3, size, size) for i in range(n)])


def test_mosaic_puts_each_image_at_half_size_in_every_quarter_with_its_label():
    n, size = 5, 8
    x = ramp_images(n, size)
    labels = torch.tensor([3, 1, 4, 0, 2])  # label of image i
    out, quarters = mosaic(x, labels, torch.Generator().manual_seed(0), prob=1.0)
    assert out.shape == (n, 3, size, size) and quarters.shape == (n, 4)
    h = size // 2
    ramp = torch.arange(h * h, dtype=torch.float32).view(h, h)  # the 2×2 average of an image, less i·100
    image_of = {int(lab): i for i, lab in enumerate(labels)}
    for b in range(n):
        for q, (qy, qx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            i = image_of[int(quarters[b, q])]
            tile = out[b, :, qy * h : (qy + 1) * h, qx * h : (qx + 1) * h]
            assert torch.equal(tile, (i * 100 + ramp).expand(3, h, h)), (b, q)
    assert quarters[:, 0].tolist() == labels.tolist()  # image b is top left of mosaic b
    for q in range(4):  # every image once in every quarter
        assert sorted(quarters[:, q].tolist()) == [0, 1, 2, 3, 4]


def test_mosaic_leaves_a_batch_alone_at_its_probability():
    x = ramp_images(4, 8)
    labels = torch.arange(4)
    out, quarters = mosaic(x, labels, torch.Generator().manual_seed(0), prob=0.0)
    assert out is x and quarters is None
    g = torch.Generator().manual_seed(1)
    mixed = sum(mosaic(x, labels, g, prob=0.3)[1] is not None for _ in range(2000))
    assert 540 <= mixed <= 660  # 600 expected; 4.6 standard deviations either side


def test_quarter_logits_are_the_means_of_each_quarter_in_reading_order():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, :2, :2] = 4.0  # class 0: top left
    maps[0, 0, 2:, 2:] = torch.tensor([[1.0, 2.0], [3.0, 6.0]])  # class 0: bottom right, mean 3
    maps[0, 1, :2, 2:] = 8.0  # class 1: top right
    maps[0, 1, 2, 0] = 2.0  # class 1: bottom left, one cell of four
    q = quarter_logits(maps)
    assert q.shape == (1, 4, 2)
    assert q[0].tolist() == [[4.0, 0.0], [0.0, 8.0], [0.0, 0.5], [3.0, 0.0]]
    assert torch.allclose(q.mean(1), maps.mean((2, 3)))  # the logits


def test_quarter_logits_of_an_odd_side_share_the_middle_row_and_column_by_area():
    # 3×3 cells over a 2×2 split: the quarter line halves the middle row and column.
    maps = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    q = quarter_logits(maps)[0, :, 0]
    # top left: (1 + ½·2 + ½·4 + ¼·5) / 1.5² = 5.25 / 2.25; the other three by symmetry of the sums
    want = [(1 + 1 + 2 + 1.25) / 2.25, (3 + 1 + 3 + 1.25) / 2.25, (7 + 2 + 4 + 1.25) / 2.25, (9 + 3 + 4 + 1.25) / 2.25]
    assert torch.allclose(q, torch.tensor(want))
    assert torch.isclose(q.mean(), torch.tensor(5.0))  # the map's mean, the logit
    one = torch.zeros(1, 1, 7, 7)
    one[0, 0, 1, 5] = 49.0  # a cell wholly in the top-right quarter of a 7×7 map (3.5 cells a side)
    assert torch.allclose(quarter_logits(one)[0, :, 0], torch.tensor([0.0, 49 / 3.5**2, 0.0, 0.0]))


class FixedMaps(nn.Module):
    """A stand-in net whose maps are a parameter: (logits, maps) as the edvis model returns them."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.maps = nn.Parameter(maps.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.maps.mean((2, 3)), self.maps


def ce(logits: list[float], target: list[float]) -> float:
    """Cross-entropy of soft targets, by hand."""
    log_z = math.log(sum(math.exp(v) for v in logits))
    return -sum(t * (v - log_z) for v, t in zip(logits, target))


def test_train_step_adds_each_quarters_cross_entropy_for_a_mosaic_batch():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0] = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    maps[0, 1] = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    net = FixedMaps(maps)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    quarters = torch.tensor([[0, 1, 1, 0]])
    targets = torch.tensor([[0.5, 0.5]])
    loss, logits = train_step(net, opt, scaler, torch.zeros(1, 3, 8, 8), targets, False, quarters)
    whole = ce([0.75, 1.0], [0.5, 0.5])
    per_quarter = [ce([2, 0], [1, 0]), ce([0, 1], [0, 1]), ce([0, 3], [0, 1]), ce([1, 0], [1, 0])]
    assert loss.item() == pytest.approx(whole + sum(per_quarter) / 4, rel=1e-6)
    assert logits.shape == (1, 4, 2)
    loss, logits = train_step(net, opt, scaler, torch.zeros(1, 3, 8, 8), targets, False)
    assert loss.item() == pytest.approx(whole, rel=1e-6) and logits.shape == (1, 2)
