"""Every `DisparityModel` configuration through `build_disparity(cfg)`: one forward and one backward at a small size, and
the YAML round trip of its config (what a run's `config.yaml` stores) builds the same state-dict keys and shapes.

Tiny widths throughout (one CPU thread, well under a minute in all). RAFT-Stereo's CNN trunk has fixed widths (64, 96,
128 channels), so the CNN rows cost most.
"""
import dataclasses

import pytest
import torch
import yaml

from stereomae.disparity import (DisparityConfig, DisparityModel, RAFT_STEREO_DEFAULTS, RAFT_STEREO_REALTIME, ViTBackbone,
                                 CNNBackbone, SharedCNNBackbone, build_disparity)
from stereomae.mae import PRESETS, build_mae
from stereomae.vit import ViTEncoder

CNN = dict(backbone='cnn', hidden_dims=[16], feature_dim=32, motion_dim=16, head_dim=16)
VIT = dict(backbone='vit', img_size=[64, 128], patch_size=[16, 16], embed_dim=32, depth=2, num_heads=2,
           neck_dims=[8, 8, 16, 16], neck_width=16, feature_dim=16, hidden_dims=[16], motion_dim=16, head_dim=16)
CONFIGS = {   # name: (fields, backbone class)
    'cnn-default':            (CNN, CNNBackbone),
    'cnn-realtime':           (CNN | RAFT_STEREO_REALTIME, SharedCNNBackbone),
    'cnn-shared-3-levels':    (CNN | dict(shared_backbone=True, context_norm='instance'), SharedCNNBackbone),
    'cnn-alt-1-level':        (CNN | dict(corr_implementation='alt', n_gru_layers=1, context_norm='group'), CNNBackbone),
    'vit':                    (VIT, ViTBackbone),
    'vit-stem':               (VIT | dict(stem_dim=8), ViTBackbone),
    'vit-stem-learned-neck':  (VIT | dict(stem_dim=8, patch_size=[8, 16], neck_reassemble='learned'), ViTBackbone),
    'vit-cnn-context':        (VIT | dict(context='cnn', n_gru_layers=2), ViTBackbone),
    'vit-stem-cnn-context-alt': (VIT | dict(stem_dim=8, context='cnn', corr_implementation='alt'), ViTBackbone),
    'vit-alt-1-level':        (VIT | dict(corr_implementation='alt', n_gru_layers=1), ViTBackbone),
    'vit-joint-2-levels-slow-fast': (VIT | dict(encoder_mode='joint', patch_size=[16, 32], n_gru_layers=2, slow_fast_gru=True,
                                                layers=[0, 1, 1, 1], input_norm='imagenet'), ViTBackbone),
}


def unused_by_design(cfg: DisparityConfig) -> set[str]:
    """Parameters no forward pass of this configuration reads, and why: RAFT-Stereo builds all three GRUs and the
    context encoder's three output levels whatever `n_gru_layers` (its checkpoints store them), and `forward_dense`
    hands the neck raw block outputs, before the ViT's final norm."""
    L, out = cfg.n_gru_layers, set()
    if L < 3: out |= {'update_block.gru32.'}
    if L < 2: out |= {'update_block.gru16.'}
    if cfg.backbone == 'cnn' or cfg.context == 'cnn':
        if L < 3: out |= {'backbone.cnet.layer5.', 'backbone.cnet.outputs32.'}
        if L < 2: out |= {'backbone.cnet.layer4.', 'backbone.cnet.outputs16.'}
    if cfg.backbone == 'vit': out |= {'backbone.encoder.norm.'}
    return out


def shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_builds_runs_backpropagates_and_round_trips(name, one_thread):
    fields, kind = CONFIGS[name]
    cfg = DisparityConfig(**fields)
    torch.manual_seed(0)
    model = build_disparity(cfg).train()
    assert type(model.backbone) is kind and model.cfg == cfg
    assert (model.encoder is None) == (cfg.backbone == 'cnn')
    g = torch.Generator().manual_seed(0)
    left = torch.rand(2, 3, 64, 128, generator=g)
    right = torch.roll(left, -3, -1)
    out = model(left, right, iters=2)
    assert out.disp.shape == (2, 1, 64, 128) and len(out.preds) == 2
    assert all(torch.isfinite(p).all() for p in out.preds)
    n = 2 ** cfg.n_downsample
    assert out.disp_low.shape == (2, 1, 64 // n, 128 // n)
    sum(p.abs().mean() for p in out.preds).backward()
    skip = unused_by_design(cfg)
    trainable = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    missed = [k for k, p in trainable if p.grad is None and not k.startswith(tuple(skip))]
    assert missed == [], missed                                      # every other trainable parameter gets a gradient
    assert all(torch.isfinite(p.grad).all() for _, p in trainable if p.grad is not None)
    assert all(p.grad is None for k, p in trainable if k.startswith(tuple(skip))), 'a part said to be unused is used'
    text = yaml.safe_dump(dataclasses.asdict(model.cfg))             # what a run's config.yaml holds
    again = DisparityConfig(**yaml.safe_load(text))
    assert again == cfg and isinstance(again.hidden_dims, tuple) and isinstance(again.img_size, tuple)
    rebuilt = build_disparity(again)
    assert shapes(rebuilt) == shapes(model)
    rebuilt.load_state_dict(model.state_dict())                      # strict: the weights fit the rebuilt model


def test_the_published_defaults_stay_the_cnn():
    "`DisparityModel()` and `DisparityModel(**options)` are RAFT-Stereo; the config's own default is the paper's ViT model."
    with torch.device('meta'):
        assert DisparityModel().cfg == DisparityConfig(backbone='cnn')
        assert type(DisparityModel(**RAFT_STEREO_REALTIME).backbone) is SharedCNNBackbone
        assert DisparityModel(**RAFT_STEREO_DEFAULTS).cfg == DisparityConfig(backbone='cnn')
        paper = build_disparity(DisparityConfig())
    assert type(paper.backbone) is ViTBackbone and paper.encoder.patch_size == (16, 32) and paper.encoder.depth == 12


def test_mae_and_encoder_give_the_same_encoder_fields():
    "A flat file configures both stages: `from_mae` (a preset) and `from_encoder` (the pre-trained instance) agree."
    torch.manual_seed(0)
    mae = build_mae('tiny')
    a, b = DisparityConfig.from_mae(PRESETS['tiny'], stem_dim=16), DisparityConfig.from_encoder(mae.encoder, stem_dim=16)
    assert a == b
    model = DisparityModel.from_encoder(mae.encoder, stem_dim=16, hidden_dims=[16])
    assert model.encoder is mae.encoder and model.cfg == DisparityConfig.from_mae(PRESETS['tiny'], stem_dim=16, hidden_dims=[16])


def test_model_cfg_follows_loaded_position_embeddings():
    "Loading timm-style weights makes the encoder's position embedding learned: `model.cfg` says so and rebuilds it."
    torch.manual_seed(0)
    model = build_disparity(DisparityConfig(**VIT))
    src = ViTEncoder((64, 128), 16, embed_dim=32, depth=2, num_heads=2, pos_embed='learned')
    model.encoder.load_weights(src.state_dict(), verbose=False)
    assert model.cfg.pos_embed == 'learned' and model.cfg == DisparityConfig(**VIT, pos_embed='learned')
    again = build_disparity(DisparityConfig(**yaml.safe_load(yaml.safe_dump(dataclasses.asdict(model.cfg)))))
    again.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(0))   # another grid: resampled, not sin-cos
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x, x.roll(-2, -1), iters=2).disp, model.eval()(x, x.roll(-2, -1), iters=2).disp)


def test_layer_decay_finds_the_vit_blocks():
    "The ViT sits under `backbone.encoder.`: the layer-wise lr decay of `stereomae.train` still numbers its blocks."
    from stereomae.train import layer_id, param_groups
    torch.manual_seed(0)
    model = build_disparity(DisparityConfig(**VIT | dict(depth=3, layers=[0, 1, 2, 2])))
    assert layer_id('backbone.encoder.patch_embed.proj.weight', 3) == 0
    assert layer_id('backbone.encoder.cls_token', 3) == 0
    assert layer_id('backbone.encoder.blocks.1.attn.qkv.weight', 3) == 2
    assert layer_id('backbone.neck.project.0.weight', 3) == 4 and layer_id('update_block.encoder.convc1.weight', 3) == 4
    groups = param_groups(model, weight_decay=0.05, lr=1e-3, layer_decay=0.5)
    assert sorted({g['layer'] for g in groups}) == [0, 1, 2, 3, 4]
    assert min(g['lr_scale'] for g in groups) == 0.5 ** 4


def test_bad_configs_and_calls_are_named():
    with pytest.raises(TypeError, match="unknown DisparityConfig field: 'n_gru_layer' \\(did you mean 'n_gru_layers'"):
        DisparityModel(n_gru_layer=2)
    with pytest.raises(TypeError, match='give cfg or config fields, not both'): DisparityModel(DisparityConfig(**CNN), n_gru_layers=2)
    with pytest.raises(TypeError, match='cfg is a dict: expected a DisparityConfig'): build_disparity(dict(CNN))
    for fields, msg in [(dict(backbone='resnet'), "backbone='resnet'"), (dict(context='left'), "context='left'"),
                        (CNN | dict(context='vit'), "context='vit' with backbone='cnn'"),
                        (VIT | dict(n_downsample=3), 'the ViT backbone decodes at 1/4'),
                        (VIT | dict(neck_dims=[8, 8, 16]), 'neck_dims=(8, 8, 16): one width per stride'),
                        (VIT | dict(stem_dim=7), 'stem_dim=7: an even number'), (CNN | dict(motion_dim=15), 'motion_dim=15'),
                        (dict(corr_radius=-1), 'corr_radius=-1: expected an integer >= 0'),
                        (dict(hidden_dims='wide'), "hidden_dims='wide': expected a list of integers"),
                        (dict(drop_path=1.5), 'drop_path=1.5: expected a number in')]:
        with pytest.raises(ValueError, match=msg.replace('(', '\\(').replace(')', '\\)')): DisparityConfig(**fields)
