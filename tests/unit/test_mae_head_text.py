import pytest
import torch

import vitforge.models as m
from vitforge.models.tokenizer import EOT, PAD, SOT


def test_masking_keeps_exact_count_per_sample() -> None:
    x = torch.randn(5, 16, 8)
    kept, mask, ids_restore = m.random_masking(x, 0.75)
    assert kept.shape == (5, 4, 8)
    assert torch.equal(mask.sum(1), torch.full((5,), 12.0))
    # Kept tokens are exactly the unmasked ones, in some order.
    for i in range(5):
        visible = x[i][mask[i] == 0]
        assert torch.equal(visible.sort(0).values, kept[i].sort(0).values)
    # Masks differ between samples; ids_restore is a permutation per sample.
    assert not all(torch.equal(mask[0], mask[i]) for i in range(1, 5))
    assert torch.equal(ids_restore.sort(1).values, torch.arange(16).expand(5, -1))


def test_masking_rejects_all_masked() -> None:
    with pytest.raises(ValueError, match="need at least one"):
        m.random_masking(torch.randn(1, 4, 2), 1.0)


def test_mae_forward_and_visible_independence() -> None:
    mae = m.mae_for(m.vit_test_patch4(img_size=16), "test")
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(2, 3, 16, 16)
    pred, mask = mae(imgs, generator=g)
    assert pred.shape == (2, 16, 48) and mask.sum() == 2 * 12
    # The encoder sees only visible patches: changing a masked patch's pixels leaves pred unchanged.
    i = int(mask[0].nonzero()[0])
    r, c = divmod(i, 4)
    imgs2 = imgs.clone()
    imgs2[0, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 5
    pred2, _ = mae(imgs2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(pred, pred2, atol=1e-5)


def test_queue_fifo_and_nearest_excludes_own_id() -> None:
    q = m.NNQueue(size=4, dim=2)
    q.push(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([10, 11, 12]))
    assert int(q.ptr) == 3 and q.ids.tolist() == [10, 11, 12, -1]
    q.push(torch.tensor([[-1.0, 0.0], [0.0, -1.0]]), torch.tensor([13, 14]))  # wraps around
    assert q.ids.tolist() == [14, 11, 12, 13] and int(q.ptr) == 1
    assert torch.allclose(q.features.norm(dim=1), torch.ones(4))
    # Query equal to id 11's entry: its own entry is excluded, so the next best (12) is returned.
    nn = q.nearest(torch.tensor([[0.0, 1.0]]), torch.tensor([11]), topk=1)
    assert torch.allclose(nn, torch.tensor([[2**-0.5, 2**-0.5]]))


def test_queue_topk_picks_among_k_nearest() -> None:
    q = m.NNQueue(size=8, dim=2)
    angles = torch.linspace(0, 3.0, 8)
    q.push(torch.stack([angles.cos(), angles.sin()], 1), torch.arange(8))
    picks = {tuple(q.nearest(torch.tensor([[1.0, 0.0]]), torch.tensor([99]), topk=3).flatten().tolist())}
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        picks.add(tuple(q.nearest(torch.tensor([[1.0, 0.0]]), torch.tensor([99]), topk=3, generator=g)[0].tolist()))
    expected = {tuple(q.features[i].tolist()) for i in range(3)}
    assert picks == expected


def test_queue_empty_lookup_fails_clearly() -> None:
    q = m.NNQueue(size=4, dim=2)
    with pytest.raises(RuntimeError, match="no valid entry"):
        q.nearest(torch.randn(1, 2), torch.tensor([0]))


def test_head_shapes_and_ema() -> None:
    head = m.NNCLRHead(16, hidden_dim=32, out_dim=8, predictor_hidden_dim=24, queue_size=64, ema_momentum=0.9)
    pred, target = head(torch.randn(6, 16))
    assert pred.shape == target.shape == (6, 8) and not target.requires_grad
    assert not any(p.requires_grad for p in head.target_projector.parameters())
    with torch.no_grad():
        for p in head.projector.parameters():
            p.add_(1.0)
    before = [t.clone() for t in head.target_projector.parameters()]
    head.update_target()
    for b, t, o in zip(before, head.target_projector.parameters(), head.projector.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * o)
    # BatchNorm statistics are copied from the online projector (MAE-CT), not averaged.
    for t, o in zip(head.target_projector.buffers(), head.projector.buffers(), strict=True):
        assert torch.equal(t, o)


def test_stage2_head_uses_online_projector_and_stage3_target_starts_from_it() -> None:
    head = m.NNCLRHead(16, hidden_dim=32, out_dim=8, predictor_hidden_dim=24, queue_size=64, ema_momentum=None)
    x = torch.randn(6, 16)
    _, proj = head(x)
    assert not proj.requires_grad and torch.allclose(proj, head.projector(x))
    before = [t.clone() for t in head.target_projector.parameters()]
    head.update_target()  # no EMA in stage 2
    assert all(torch.equal(b, t) for b, t in zip(before, head.target_projector.parameters(), strict=True))
    head.reset_target()
    assert all(torch.equal(t, o) for t, o in zip(head.target_projector.state_dict().values(),
                                                 head.projector.state_dict().values(), strict=True))  # fmt: skip
    # The projector's last BatchNorm has affine weights; the predictor's last linear has no bias.
    assert head.projector[-1].affine and head.predictor[-1].bias is None


def test_ema_of_a_bf16_head_follows_the_fp32_one() -> None:
    """DeepSpeed's bf16 casts the head; its EMA must still move (the average is kept in fp32)."""
    torch.manual_seed(0)
    ref = m.NNCLRHead(16, 32, 8, 32, queue_size=64, ema_momentum=0.99)
    low = m.NNCLRHead(16, 32, 8, 32, queue_size=64, ema_momentum=0.99)
    low.load_state_dict(ref.state_dict())
    low.bfloat16()
    naive = [t.clone() for t in low.target_projector.parameters()]  # the same average, done in bf16
    with torch.no_grad():
        for head in (ref, low):  # the online projector moves by a small step, as after an update
            for q in head.projector.parameters():
                q.add_(0.05)
    for _ in range(50):
        ref.update_target()
        low.update_target()
        with torch.no_grad():
            for t, o in zip(naive, low.projector.parameters(), strict=True):
                t.lerp_(o, 0.01)
    # Every target weight moved by 0.05 (1 - 0.99^50) = 0.0197; bf16 keeps it up to rounding.
    for (name, a), b in zip(ref.target_projector.named_parameters(), low.target_projector.parameters(), strict=True):
        assert ((a - b.float()).abs() <= a.abs() * 2**-7 + 1e-4).all(), name  # two roundings: start, end
    naive_err = max((a - b.float()).abs().max() for a, b in zip(ref.target_projector.parameters(), naive, strict=True))
    assert naive_err > 0.01  # teeth: averaging in bf16 itself leaves weights behind (steps below one bit)


def test_head_runs_in_bf16_with_fp32_batchnorm() -> None:
    torch.manual_seed(0)
    head = m.NNCLRHead(16, 32, 8, 32, queue_size=64, ema_momentum=0.99)
    x = torch.randn(12, 16)
    p32, _ = head(x)
    low = m.NNCLRHead(16, 32, 8, 32, queue_size=64, ema_momentum=0.99)
    low.load_state_dict(head.state_dict())
    low.bfloat16()
    for mod in low.modules():  # as DeepSpeed leaves them: running statistics in fp32
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.data, mod.running_var.data = mod.running_mean.float(), mod.running_var.float()
    p16, _ = low(x.bfloat16())
    assert p16.dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(p16.float(), p32, dim=-1).min() > 0.98


def test_tokenizer_roundtrip_truncation_and_errors() -> None:
    tok = m.ByteTokenizer(context_length=8)
    ids = tok(["hi", "a much longer caption"])
    assert ids.shape == (2, 8)
    assert ids[0].tolist() == [SOT, ord("h"), ord("i"), EOT, PAD, PAD, PAD, PAD]
    assert ids[1, -1] == EOT and tok.decode(ids[1]) == "a much"
    assert m.ByteTokenizer(16).decode(m.ByteTokenizer(16)(["größe"])[0]) == "größe"
    with pytest.raises(TypeError, match="caption must be a string"):
        tok([3])


def test_text_encoder_pools_at_eot_causally() -> None:
    tok = m.ByteTokenizer(context_length=16)
    enc = m.TextEncoder(dim=32, depth=2, heads=2, context_length=16).eval()
    a = tok(["red circle"])
    b = a.clone()
    b[0, -1] = 65  # a token after EOT: causal attention means the EOT feature cannot see it
    assert torch.allclose(enc(a), enc(b), atol=1e-6)
    c = tok(["red square"])
    assert not torch.allclose(enc(a), enc(c))
    assert enc(a).shape == (1, 32)


def test_image_text_model_embeddings_normalized() -> None:
    model = m.ImageTextModel(m.vit_test_patch4(img_size=8), m.TextEncoder(32, 1, 2, 8), embed_dim=16)
    img, txt = model(torch.randn(3, 3, 8, 8), m.ByteTokenizer(8)(["a", "b", "c"]))
    assert img.shape == txt.shape == (3, 16)
    assert torch.allclose(img.norm(dim=1), torch.ones(3)) and torch.allclose(txt.norm(dim=1), torch.ones(3))
