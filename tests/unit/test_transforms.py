import pytest
import torch
import torch.nn.functional as F

from vitforge.data.pipeline import sample_seed
from vitforge.data.transforms import (
    ColorJitter,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    Normalize,
    RandomResizedCrop,
    Solarize,
    build_view,
    normalize_uint8,
    resize,
    resize_uint8,
)


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_resized_crop_area_and_ratio_statistics() -> None:
    crop = RandomResizedCrop(16, scale=(0.2, 0.6), ratio=(0.5, 2.0))
    areas, ratios = [], []
    for s in range(400):
        top, left, h, w = crop.params(100, 100, g(s))
        assert 0 <= top <= 100 - h and 0 <= left <= 100 - w
        areas.append(h * w / 1e4)
        ratios.append(w / h)
    areas_t, ratios_t = torch.tensor(areas), torch.tensor(ratios)
    assert 0.18 <= areas_t.min() and areas_t.max() <= 0.62
    assert abs(areas_t.mean().item() - 0.4) < 0.03  # uniform in scale
    assert abs(ratios_t.log().mean().item()) < 0.08  # log-uniform ratio, symmetric about 1
    assert crop(torch.rand(3, 100, 80), g()).shape == (3, 16, 16)


def test_crop_falls_back_to_centre() -> None:
    crop = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(4.0, 5.0))
    # No 10x10 crop has aspect 4-5 at full area: centre crop, full width, height 10 / 4.
    assert crop.params(10, 10, g()) == (4, 0, 2, 10)


def test_flip_probability_and_content() -> None:
    img = torch.arange(12.0).reshape(1, 3, 4)
    flips = [not torch.equal(HorizontalFlip(0.5)(img, g(s)), img) for s in range(400)]
    assert 0.42 < sum(flips) / 400 < 0.58
    assert torch.equal(HorizontalFlip(1.0)(img, g()), img.flip(-1))


def test_normalize_gives_zero_mean_unit_std() -> None:
    x = torch.rand(3, 64, 64) * torch.tensor([0.5, 1.0, 0.2]).view(3, 1, 1)
    mean, std = x.mean((1, 2)).tolist(), x.std((1, 2)).tolist()
    y = Normalize(mean, std)(x)
    assert torch.allclose(y.mean((1, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std((1, 2)), torch.ones(3), atol=1e-4)


def test_strong_augmentations_behave() -> None:
    x = torch.rand(3, 16, 16)
    gray = Grayscale(1.0)(x, g())
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert torch.allclose(Solarize(1.0, 0.5)(torch.tensor([[[0.2, 0.8]]]), g()), torch.tensor([[[0.2, 0.2]]]))
    blurred = GaussianBlur(1.0, (1.5, 1.5))(x, g())
    assert blurred.shape == x.shape and blurred.var() < x.var()
    assert torch.allclose(blurred.mean(), x.mean(), atol=0.02)
    jit = ColorJitter(p=1.0)(x, g())
    assert jit.shape == x.shape and 0 <= jit.min() and jit.max() <= 1 and not torch.equal(jit, x)


def test_resize_clamps_and_rejects_unknown_mode() -> None:
    y = resize(torch.rand(3, 10, 10), (20, 20))
    assert y.shape == (3, 20, 20) and y.min() >= 0 and y.max() <= 1
    with pytest.raises(ValueError, match="bilinear"):
        resize(torch.rand(3, 4, 4), (2, 2), "nearest")


def photo(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth uint8 image (photo-like: random colours upsampled 16x, as bench.loader's JPEGs)."""
    small = torch.rand(1, 3, h // 16 + 1, w // 16 + 1, generator=g(seed))
    return (F.interpolate(small, size=(h, w), mode="bilinear") * 255).round().to(torch.uint8)[0]


@pytest.mark.parametrize("shape", [(3, 1000, 700), (3, 358, 448), (3, 160, 150), (3, 100, 120)])
def test_uint8_resize_is_the_float_resize_on_photos(shape) -> None:
    # Serve and the loader resize uint8 with torch's uint8 kernel (no float copy, 3-5x faster).
    # It rounds between its passes: on photos within 1.5/255 of the float resize, shrinking or
    # enlarging to 224; on pixel noise it can be far off in a few pixels, but not on average.
    img = photo(shape[1], shape[2], seed=shape[1])
    out = resize_uint8(img, (224, 224))
    assert out.dtype == torch.uint8 and out.shape == (3, 224, 224)
    diff = (out.float() / 255 - resize(img.float() / 255, (224, 224))).abs()
    assert diff.max() <= 1.5 / 255 and diff.mean() <= 0.4 / 255
    noise = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g())
    diff = (resize_uint8(noise, (224, 224)).float() / 255 - resize(noise.float() / 255, (224, 224))).abs()
    assert diff.mean() <= 1.0 / 255


def test_normalize_uint8_is_normalize_of_the_floats() -> None:
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=g())
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    ref = torch.stack([Normalize(mean, std)(img.float() / 255) for img in x])
    assert torch.allclose(normalize_uint8(x, mean, std), ref, atol=1e-6)


def test_view_deterministic_by_seed() -> None:
    view = build_view(16, strong=True)
    x = torch.rand(3, 32, 32)
    assert torch.equal(view(x, g(sample_seed(1, 0, 5, 0))), view(x, g(sample_seed(1, 0, 5, 0))))
    assert not torch.equal(view(x, g(sample_seed(1, 0, 5, 0))), view(x, g(sample_seed(1, 1, 5, 0))))
    assert sample_seed(0, 0, 5, 0) != sample_seed(0, 0, 5, 1)
    assert build_view(16, train=False)(x, g()).shape == (3, 16, 16)


@pytest.mark.parametrize("strong", [False, True])
@pytest.mark.parametrize("shape", [(3, 358, 448), (3, 90, 70), (3, 20, 24)])
def test_views_of_uint8_images_match_views_of_float_images(strong, shape) -> None:
    # The loader hands the decoded uint8 photo to the views: the same crops and flips, resized in
    # uint8 (within 1.5/255 of today's float path before normalizing), and with normalize=False
    # ending in uint8 that normalize_uint8 turns into the normalized view (rounding: 0.5/255 more).
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    size = 32 if shape[1] < 100 else 224
    view = build_view(size, mean, std, strong=strong, scale=(0.08, 1.0))
    raw = build_view(size, mean, std, strong=strong, scale=(0.08, 1.0), normalize=False)
    for seed in range(10):
        img = photo(shape[1], shape[2], seed)
        old, new = view(img.float() / 255, g(seed)), view(img, g(seed))
        u8 = raw(img, g(seed))
        assert new.dtype == torch.float32 and u8.dtype == torch.uint8 and old.shape == u8.shape == (3, size, size)
        for out, tol in ((new, 1.5), (normalize_uint8(u8[None], mean, std)[0], 2.0)):
            off = ((out - old).abs() > (tol / 255) / min(std) + 1e-5).float().mean()
            # a strong view's solarize threshold can flip a pixel that the rounding moved across it
            assert off <= (0.01 if strong else 0.0), (seed, tol, off)
