"Augmentation in DataLoader workers: each sample draws from its own key's generator, so workers differ and seeds reproduce."
import torch
from stereomae.augment import StereoAugmentor, PairFlip, PairRandomResizedCrop, mim_transforms, gt_error
from stereomae.data import make_loader, split_key
from stereomae.synthetic import SyntheticStereo


class Same(torch.utils.data.Dataset):
    "The same pair n times, so that any difference between items comes from the augmentation."
    seedable = True
    def __init__(self, sample, aug, n=4): self.s, self.aug, self.n = sample, aug, n
    def __len__(self): return self.n
    def __getitem__(self, key): return self.aug(self.s, split_key(key)[1])


def _run(aug, seed, workers=2):
    s = SyntheticStereo(1, size=(64, 128), seed=0)[0]
    return torch.cat([b['left'] for b in make_loader(Same(s, aug), batch_size=1, num_workers=workers, seed=seed, shuffle=False)])


def test_workers_draw_different_augmentations():
    out = _run(StereoAugmentor((48, 96), eraser_size=(10, 20)), seed=1)
    assert not torch.equal(out[0], out[1])  # items 0 and 1 come from different workers


def test_seeded_loader_is_reproducible_with_any_number_of_workers():
    "The same draws in workers and in the main process (up to float sums, which depend on the thread count)."
    aug = StereoAugmentor((48, 96), eraser_size=(10, 20))
    a, b, c = _run(aug, seed=5), _run(aug, seed=5, workers=0), _run(aug, seed=6)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert (a - c).abs().max() > 0.1


def test_flip_then_crop_keeps_ground_truth():
    s = SyntheticStereo(2, size=(96, 160), seed=4, right_disp=True)[1]
    g = torch.Generator().manual_seed(2)
    out = PairRandomResizedCrop((64, 96), scale=(0.5, 1.0))(PairFlip(p=1.0)(s, g), g)
    assert gt_error(out) < 0.3 * gt_error(out, offset=1.0)
    assert sorted(mim_transforms((32, 64))({k: s[k] for k in ('left', 'right')}, g)) == ['left', 'right']
