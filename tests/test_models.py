import pytest
import torch

from ocrobin import models


def test_lstm2_seed_has_the_original_parameter_count():
    m = models.build("lstm2-seed")
    assert models.count_parameters(m) == 1001


def test_registry_lists_and_rejects_unknown():
    assert {"lstm2-seed", "msfcn"} <= set(models.architectures())
    with pytest.raises(KeyError, match="unknown architecture"):
        models.build("nope")


@pytest.mark.parametrize("arch", ["lstm2-seed", "msfcn"])
@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (100, 31)])
def test_output_has_input_size(arch, shape):
    m = models.build(arch).eval()
    with torch.inference_mode():
        y = m(torch.rand(2, 1, *shape))
    assert y.shape == (2, 1, *shape)
    assert torch.isfinite(y).all()


def test_lstm2_per_image_bn_uses_each_images_statistics():
    m = models.build("lstm2-seed").eval()
    a, b = torch.rand(1, 1, 20, 24), torch.rand(1, 1, 20, 24) * 0.3
    with torch.inference_mode():
        together = m(torch.cat([a, b]))
        alone = torch.cat([m(a), m(b)])
    torch.testing.assert_close(together, alone)


def test_lstm2_bn_stats_argument_matches_per_image_mode():
    m = models.build("lstm2-seed").eval()
    x = torch.rand(1, 1, 16, 16)
    with torch.inference_mode():
        f = m.features(x)
        stats = (f.mean((0, 2, 3)), f.var((0, 2, 3), unbiased=False))
        torch.testing.assert_close(m(x, bn_stats=stats), m(x), atol=1e-5, rtol=1e-4)
