"Synthetic stereo: the same items in DataLoader workers, and the noise-only fallback without scikit-image."
import sys
import pytest
import torch
from stereomae.synthetic import SyntheticStereo, texture_bank, warp_error


def test_workers_render_the_same_items():
    ds = SyntheticStereo(6, size=(48, 80), seed=3)
    serial = [ds[i] for i in range(6)]
    dl = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batches = list(dl)
    left = torch.cat([b['left'] for b in batches])
    assert torch.equal(left, torch.stack([s['left'] for s in serial]))
    assert [n for b in batches for n in b['name']] == [s['name'] for s in serial]


def test_without_scikit_image_noise_only(monkeypatch):
    monkeypatch.setitem(sys.modules, 'skimage.data', None)  # `import skimage.data` now raises ImportError
    with pytest.warns(UserWarning, match='scikit-image is not installed'):
        bank = texture_bank.__wrapped__(tile=64, n_noise=3)
    assert len(bank) == 3 and all(n.startswith('noise') for n in bank.names)


@pytest.mark.parametrize('size', [(32, 48), (75, 131), (200, 96)])
def test_any_size_keeps_exact_ground_truth(size):
    ds = SyntheticStereo(2, size=size, seed=11, max_disp=min(20, size[1] // 3))
    for i in range(2):
        r = ds.render(i)
        assert r.left.shape == (3, *size) and r.disp.max() <= ds.max_disp + 1e-4 and r.disp.min() >= 1 - 1e-4
        e = warp_error(r)
        assert e.numel() > 0 and e.mean() < 0.01
