"""`DisparityModel` learns: the CNN (RAFT-Stereo) and the ViT variants each overfit one synthetic pair, EPE < 1 px
in a bounded number of CPU steps with tiny configurations, trained by the kit's engine with RAFT-Stereo's recipe (sequence
loss, AdamW, one-cycle schedule stepped per iteration, gradient clipping, frozen BatchNorm). Minutes on a shared CPU: flagged slow."""
import pytest, torch
from stereomae.disparity import DisparityModel
from stereomae.losses import sequence_loss
from stereomae.synthetic import SyntheticStereo
from stereomae.train import FinetuneConfig
from stereomae.disparity import fit_disparity
from stereomae.vit import ViTEncoder


def one_pair(size, max_disp, seed=3):
    s = SyntheticStereo(1, size=size, max_disp=max_disp, seed=seed, n_layers=(2, 3))[0]
    return [s[k][None] for k in ('left', 'right', 'disp', 'valid')]


def overfit(model, pair, steps, iters=6, lr=1e-3):
    "Train on one pair with the kit's engine (in memory, RAFT-Stereo's recipe); return the evaluation-mode EPE before and after."
    left, right, disp, valid = pair
    def epe():
        model.eval()
        with torch.no_grad(): return (model(left, right, iters=iters).disp - disp).abs()[valid].mean().item()
    before = epe()
    cfg = FinetuneConfig(runs_dir='', steps=steps, batch_size=1, lr=lr, warmup=0.05, train_iters=iters, device='cpu',
                         precision='fp32', progress=False, log_every=steps)
    fit_disparity(cfg, model, dict(left=left, right=right, disp=disp, valid=valid))
    return before, epe()


@pytest.fixture
def one_thread():
    "One thread: on a CPU shared by several jobs, two threads spend most of their time waiting for each other."
    n = torch.get_num_threads(); torch.set_num_threads(1); torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_vit_variant_overfits_one_pair(one_thread):
    enc = ViTEncoder(img_size=(64, 128), patch_size=16, embed_dim=64, depth=4, num_heads=4)
    model = DisparityModel.from_encoder(enc, neck_dims=(32, 32, 64, 64), neck_width=64, feature_dim=64,
                                        hidden_dims=(32,), n_gru_layers=2)
    before, after = overfit(model, one_pair((64, 128), 12), steps=150)
    assert after < 1.0 < before, (before, after)


@pytest.mark.slow
def test_cnn_variant_overfits_one_pair(one_thread):
    model = DisparityModel(hidden_dims=(32,), feature_dim=64, n_gru_layers=2)
    before, after = overfit(model, one_pair((32, 64), 8), steps=120)
    assert after < 1.0 < before, (before, after)


def test_one_training_step_reaches_every_part(one_thread):
    "Fast check: one backward pass gives gradients to encoders, context convs and the whole update block."
    model = DisparityModel(hidden_dims=(16,), feature_dim=32, n_gru_layers=3, corr_implementation='alt').train()
    left, right, disp, valid = one_pair((32, 64), 8)
    loss, _ = sequence_loss(model(left, right, iters=2).preds, disp, valid)
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == [], dead


def test_vit_with_stem_training_step_reaches_every_part(one_thread):
    "Fast check: with a `MatchingStem` and a narrow update block (the tutorial's model), one backward pass reaches every part."
    enc = ViTEncoder(img_size=(32, 64), patch_size=16, embed_dim=32, depth=2, num_heads=2)
    model = DisparityModel.from_encoder(enc, neck_dims=(8, 8, 16, 16), neck_width=16, feature_dim=16, stem_dim=8,
                                        hidden_dims=(8,), n_gru_layers=3, motion_dim=12, head_dim=16).train()
    ub = model.update_block
    assert (ub.encoder.out_dim, ub.flow_head.conv1.out_channels, ub.mask[0].out_channels) == (11, 16, 16)
    left, right, disp, valid = one_pair((32, 64), 8)
    loss, _ = sequence_loss(model(left, right, iters=2).preds, disp, valid)
    loss.backward()
    parts = tuple('backbone.' + p for p in ('stem.', 'feature_head.', 'neck.', 'context_heads.', 'encoder.blocks.')) + ('update_block.',)
    used = [(n, p) for n, p in model.named_parameters() if n.startswith(parts)]
    assert {n.split('.')[1] for n, _ in used if n.startswith('backbone.')} >= {'stem', 'feature_head', 'neck', 'encoder'}, [n for n, _ in used][:5]
    dead = [n for n, p in used if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == [], dead
