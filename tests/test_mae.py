"Smoke tests over every `StereoMAE` preset (shapes, finite loss, gradients); the large ones are slow."
import warnings
from dataclasses import replace
import pytest
import torch

from stereomae.mae import PRESETS, build_mae

SMALL = ('tiny', 'small')


def _smoke(name: str, backward: bool):
    cfg = PRESETS[name]
    H, W = cfg.img_size
    (ph, pw), N = cfg.patch_size, (H // cfg.patch_size[0]) * (W // cfg.patch_size[1])
    g = torch.Generator().manual_seed(0)
    left, right = torch.rand(1, 3, H, W, generator=g), torch.rand(1, 3, H, W, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # random VGG for the perceptual preset
        model = build_mae(cfg)
    out = model(left, right, generator=g)
    assert out.pred.shape == (1, 2, N, ph * pw * 3) and out.mask.shape == (1, 2, N)
    assert out.mask.sum(-1).max() == int(cfg.mask_ratio * N)
    assert torch.isfinite(out.loss), out.loss
    if backward:
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize('name', SMALL)
def test_small_presets(name): _smoke(name, backward=True)


@pytest.mark.slow
@pytest.mark.parametrize('name', [n for n in PRESETS if n not in SMALL])
def test_large_presets(name): _smoke(name, backward=False)


def test_joint_cross_view_on_small():
    cfg = replace(PRESETS['small'], encoder_mode='joint', decoder='cross', mask_mode='cross_view', mask_ratio=0.9)
    H, W = cfg.img_size
    out = build_mae(cfg)(torch.rand(2, 3, H, W), torch.rand(2, 3, H, W))
    assert torch.isfinite(out.loss)
    assert ((out.mask.sum(-1) == 0) | (out.mask.sum(-1) == int(0.9 * out.mask.shape[-1]))).all()
