"""The model zoo: parameter counts, shapes through forward and backward, gradient checks
of the residual blocks and of whole small networks, the glue layers and whitening init."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
from minidl import layers as L
from minidl import models
from minidl.gradcheck import assert_gradients

# ----------------------------------------------------------------------------- counts
# Standard numbers. torchvision: resnet18 11,689,512 and resnet50 25,557,032 for 1000
# classes (ImageNet stem). The CIFAR stem replaces the 7x7 conv (9,408) by a 3x3 (1,728).
PARAMETER_COUNTS = [
    ("mlp 784-512-512-10", lambda: models.mlp([784, 512, 512, 10]), 669_706),
    ("mnist_cnn", models.mnist_cnn, 570_436),
    ("tiny_cnn", models.tiny_cnn, 2_034),
    ("resnet18 cifar", lambda: models.resnet18(10), 11_173_962),
    ("resnet18 imagenet", lambda: models.resnet18(1000, cifar_stem=False), 11_689_512),
    ("resnet34 cifar", lambda: models.resnet34(10), 21_282_122),
    ("resnet50 imagenet", lambda: models.resnet50(1000, cifar_stem=False), 25_557_032),
    ("resnet50 cifar", lambda: models.resnet50(10), 23_520_842),
    ("resnet101 cifar", lambda: models.resnet101(10), 42_512_970),
    ("vgg11", lambda: models.vgg11(batch_norm=False), 9_750_922),
    ("vgg11_bn", lambda: models.vgg11(batch_norm=True), 9_756_426),
    ("resnet9", models.resnet9, 6_573_120),
    ("airbench", models.airbench, 1_971_640),
]


@pytest.mark.parametrize("build, expected", [(b, n) for _, b, n in PARAMETER_COUNTS],
                         ids=[name for name, _, _ in PARAMETER_COUNTS])
def test_parameter_counts_match_the_standard_numbers(build, expected):
    assert build().num_parameters() == expected


def test_resnet18_with_double_width_has_about_four_times_the_parameters():
    # every conv has 4x the weights; BN and the head grow 2x
    wide, standard = models.resnet18(width=128), models.resnet18()
    assert 3.9 < wide.num_parameters() / standard.num_parameters() < 4.0


def _summary_text(model, input_shape):
    lines = []
    totals = model.summary(input_shape, print_fn=lines.append)
    return "\n".join(lines), totals


def test_summary_of_the_mnist_cnn_reports_570436_parameters_and_its_shapes():
    text, totals = _summary_text(models.mnist_cnn(), (1, 28, 28))
    assert totals["params"] == 570_436
    assert "total parameters: 570,436" in text
    assert "('N', 72, 3, 3)" in text and "('N', 648)" in text
    # conv 18->36 on 28x28: 36 * 18 * 9 multiply-adds per output pixel
    assert f"{28 * 28 * 36 * 18 * 9:,}" in text


def test_summary_of_resnet18_names_layers_like_torchvision():
    text, totals = _summary_text(models.resnet18(), (3, 32, 32))
    assert totals["params"] == 11_173_962
    assert "layer2.0.downsample.0 (Conv2d)" in text
    assert "layer4.1.conv2 (Conv2d)" in text and "('N', 512, 4, 4)" in text
    assert "fc (Linear)" in text and "('N', 10)" in text


# ----------------------------------------------------------------------------- shapes
def _random_images(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


SMALL_MODELS = [
    ("mlp", lambda: models.mlp([64, 16, 16, 10], dropout=0.2), (3, 1, 8, 8)),
    ("mnist_cnn", models.mnist_cnn, (2, 1, 28, 28)),
    ("tiny_cnn", models.tiny_cnn, (2, 1, 12, 12)),
    ("resnet18 cifar", lambda: models.resnet18(10, width=4), (2, 3, 16, 16)),
    ("resnet18 imagenet", lambda: models.resnet18(7, cifar_stem=False, width=4), (2, 3, 32, 32)),
    ("resnet34 gelu dropout", lambda: models.resnet34(10, width=2, dropout=0.3, activation="gelu"),
     (2, 3, 8, 8)),
    ("resnet50", lambda: models.resnet50(10, width=2, activation="leaky_relu"), (2, 3, 8, 8)),
    ("resnet101", lambda: models.resnet101(10, width=2, activation="elu"), (2, 3, 8, 8)),
    ("custom_resnet", models.custom_resnet, (2, 3, 8, 8)),
    ("custom_resnet no bn no relu", lambda: models.custom_resnet(use_bn=False, use_relu=False),
     (2, 3, 8, 8)),
    ("vgg11", lambda: models.vgg11(batch_norm=False), (2, 3, 32, 32)),
    ("vgg11_bn", lambda: models.vgg11(batch_norm=True, dropout=0.5), (2, 3, 32, 32)),
    ("resnet9", lambda: models.resnet9(width=8), (2, 3, 16, 16)),
    ("airbench", lambda: models.airbench(widths=(8, 16, 16)), (2, 3, 16, 16)),
]


@pytest.mark.parametrize("build, input_shape", [(b, s) for _, b, s in SMALL_MODELS],
                         ids=[name for name, _, _ in SMALL_MODELS])
def test_forward_and_backward_shapes(build, input_shape):
    model = build()
    x = _random_images(input_shape)
    logits = model(x)
    num_classes = model.parameters()[-1].shape[-1]
    assert logits.shape == (input_shape[0], num_classes) and logits.dtype == np.float32
    dy = np.random.default_rng(1).standard_normal(logits.shape).astype(np.float32)
    dx = model.backward(dy)
    assert dx.shape == x.shape and dx.dtype == np.float32
    for name, param in model.named_parameters():
        assert param.grad.shape == param.shape and param.grad.dtype == np.float32, name
        assert np.isfinite(param.grad).all(), name
        assert np.any(param.grad != 0), f"{name}: backward never reached this parameter"
    model.eval()
    assert model(x).shape == logits.shape


def test_models_run_on_the_backend_under_test(xp):
    model = models.resnet18(10, width=2)
    if xp is not np:
        model.to("gpu")
    x = xp.asarray(_random_images((2, 3, 8, 8)))
    logits = model(x)
    assert minidl.get_array_module(logits) is xp and logits.shape == (2, 10)
    assert model.backward(xp.ones_like(logits)).shape == x.shape


def test_builder_options_change_the_layers():
    gelu_net = models.resnet18(activation="gelu", dropout=0.5)
    kinds = [type(m) for _, m in gelu_net.named_modules()]
    assert L.GELU in kinds and L.ReLU not in kinds
    names = [name for name, _ in gelu_net.named_modules()]
    assert names[-2:] == ["dropout", "fc"]  # dropout sits right before the classifier
    assert not any(isinstance(m, L.MaxPool2d) for _, m in models.resnet18().named_modules())
    assert isinstance(models.resnet18(cifar_stem=False).maxpool, L.MaxPool2d)
    plain = models.custom_resnet(use_bn=False, use_relu=False)
    assert not any(isinstance(m, (L.BatchNorm1d, L.BatchNorm2d, L.ReLU))
                   for _, m in plain.named_modules())
    plain_vgg = models.vgg11(batch_norm=False)
    assert not any(isinstance(m, L.BatchNorm2d) for _, m in plain_vgg.named_modules())
    assert sum(isinstance(m, L.BatchNorm2d) for _, m in models.vgg11().named_modules()) == 8
    assert sum(isinstance(m, L.Conv2d) for _, m in models.airbench().named_modules()) == 7


@pytest.mark.parametrize("build, message", [
    (lambda: models.mlp([784]), "mlp: sizes needs"),
    (lambda: models.mlp([784, 0, 10]), r"mlp: sizes\[1\] must be a positive integer, got 0"),
    (lambda: models.mlp([4, 2], activation="swish"),
     "mlp: activation must be one of 'elu', 'gelu', .* got 'swish'"),
    (lambda: models.mlp([4, 2], dropout=1.0), r"mlp: dropout must be a real number in \[0, 1\)"),
    (lambda: models.mlp([4, 2], dropout=float("nan")), "mlp: dropout must be .* got nan"),
    (lambda: models.resnet18(num_classes=0), "ResNet: num_classes"),
    (lambda: models.resnet18(activation="relu6"), "ResNet: activation must be one of"),
    (lambda: models.resnet18(dropout=float("inf")), "ResNet: dropout must be"),
    (lambda: models.BasicBlock(4, 4, activation="relu6"), "BasicBlock: activation must be"),
    (lambda: models.make_activation("swish"), "make_activation: activation must be one of"),
    (lambda: models.ResNet(L.Linear, (2, 2, 2, 2)), "block must be BasicBlock or Bottleneck"),
    (lambda: models.ResNet(models.BasicBlock, (2, 2, 2)), "4 stage lengths"),
    (lambda: models.BasicBlock(4, 4, stride=0), "BasicBlock: stride"),
    (lambda: models.airbench(widths=(8, 8)), "3 block widths"),
    (lambda: models.vgg11(dropout=1.5), "vgg11: dropout must be"),
    (lambda: models.Scale(0.0), "Scale: multiplier must be a non-zero"),
    (lambda: models.Scale(float("nan")), "Scale: multiplier must be a real number"),
])
def test_bad_arguments_are_refused_with_a_clear_message(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("build, message", [
    (lambda: models.mlp([784, True, 10]), r"mlp: sizes\[1\] must be a positive integer, got True"),
    (lambda: models.mlp(784), "mlp: sizes must be a list"),
    (lambda: models.mlp([4, 2], dropout=None), "mlp: dropout must be a real number"),
    (lambda: models.mnist_cnn(num_classes=10.0),
     "mnist_cnn: num_classes must be a positive integer"),
    (lambda: models.tiny_cnn(num_classes=True), "tiny_cnn: num_classes"),
    (lambda: models.resnet18(cifar_stem="yes"), "ResNet: cifar_stem must be True or False"),
    (lambda: models.vgg11(batch_norm=1), "vgg11: batch_norm must be True or False"),
    (lambda: models.vgg11(width=16.0), "vgg11: width must be a positive integer"),
    (lambda: models.custom_resnet(use_bn=None), "custom_resnet: use_bn must be True or False"),
    (lambda: models.resnet9(width=True), "ResNet9: width must be a positive integer"),
    (lambda: models.Scale(True), r"Scale: multiplier must be a real number .* got True \(bool\)"),
])
def test_wrong_argument_types_are_refused_with_type_error(build, message):
    with pytest.raises(TypeError, match=message):
        build()


def test_builders_accept_numpy_scalars():
    net = models.mlp([np.int64(4), np.int32(3), 2], dropout=np.float32(0.25))
    assert net[1].in_features == 4 and type(net[1].in_features) is int
    assert models.Scale(np.float32(0.125)).multiplier == 0.125
    assert sum(p.data.size for p in models.tiny_cnn(num_classes=np.int64(10)).parameters()) > 0


def test_wrong_input_shape_names_the_layer():
    with pytest.raises(ValueError, match="Conv2d"):
        models.resnet18()(_random_images((2, 1, 16, 16)))  # one channel instead of three
    with pytest.raises(ValueError, match="GlobalMaxPool2d"):
        L.GlobalMaxPool2d()(_random_images((2, 3)))


# ----------------------------------------------------------------------------- gradient checks
def _float64(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


class _Network(minidl.Module):
    """Runs ``net`` and saves a marker for backward.

    check_layer frees the checked module's own cache after every probe with
    ``saved_for_backward``; a Sequential keeps no cache of its own (its children do), so
    whole Sequential-based networks are checked through this wrapper.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        self.save_for_backward(True)
        return self.net(x)

    def backward(self, dy):
        self.saved_for_backward(dy)
        return self.net.backward(dy)


# The three shortcut cases are always checked; hypothesis adds sizes and activations.
@pytest.mark.parametrize("block_class", [models.BasicBlock, models.Bottleneck])
@pytest.mark.parametrize("in_channels, channels, stride", [
    (4, 4, 1),   # identity shortcut (BasicBlock); projection for Bottleneck (4 != 16)
    (3, 2, 1),   # projection: channel change
    (3, 2, 2),   # projection: channel change and stride
], ids=["stride1-same", "stride1-project", "stride2-project"])
def test_residual_blocks_gradients(block_class, in_channels, channels, stride):
    minidl.set_default_dtype(np.float64)
    if block_class is models.Bottleneck and in_channels == 4:
        in_channels = 4 * channels  # identity shortcut for the Bottleneck too
    block = block_class(in_channels, channels, stride)
    assert (block.downsample is None) == (stride == 1 and in_channels == channels * block.expansion)
    assert_gradients(block, _float64((2, in_channels, 5, 4), seed=stride))


@given(block_class=st.sampled_from([models.BasicBlock, models.Bottleneck]),
       in_channels=st.integers(1, 3), channels=st.integers(1, 3), stride=st.sampled_from([1, 2, 3]),
       height=st.integers(3, 6), width=st.integers(3, 6), batch=st.integers(1, 2),
       activation=st.sampled_from(["relu", "leaky_relu", "elu", "gelu"]),
       training=st.booleans())
@settings(max_examples=8)
def test_residual_blocks_gradients_over_drawn_configurations(block_class, in_channels, channels,
                                                             stride, height, width, batch,
                                                             activation, training):
    minidl.set_default_dtype(np.float64)
    block = block_class(in_channels, channels, stride, activation)
    block.train(training)
    if training and batch * ((height - 1) // stride + 1) * ((width - 1) // stride + 1) == 1:
        batch = 2  # train-mode BatchNorm needs more than one value per channel
    seed = in_channels + 10 * channels + 100 * height + 1000 * width
    assert_gradients(block, _float64((batch, in_channels, height, width), seed))


def _randomise_batchnorm(model, seed=0):
    """Give every BatchNorm a random scale, shift and running statistics.

    At init (scale 1, shift 0, running mean 0) a bias-free conv of an all-zero patch
    (ReLU outputs) lands exactly on the next ReLU's kink, where finite differences
    disagree with any one-sided derivative; random shifts move it away.
    """
    rng = np.random.default_rng(seed)
    for _, module in model.named_modules():
        if isinstance(module, (L.BatchNorm1d, L.BatchNorm2d)):
            channels = module.running_mean.shape
            for param in (module.weight, module.bias):
                if param is not None:
                    param.data[...] = rng.choice([-1, 1], channels) * rng.uniform(0.3, 1.0, channels)
            module.running_mean[...] = rng.uniform(-0.5, 0.5, channels)
            module.running_var[...] = rng.uniform(0.5, 1.5, channels)


# Directional checks (one random direction per tensor) of whole networks. Seeded inputs
# keep every ReLU input and max-pool contest farther than eps from its kink; the
# ReLU paths are checked entry by entry in the block tests above. custom_resnet gets
# 16x16 images so its last train-mode BatchNorms see 8 values per channel: over only
# two, BN maps them to about +-1 whatever they are, a function so curved that centered
# differences lose their accuracy.
WHOLE_NETWORKS = [
    ("resnet18-imagenet-stem", lambda: models.resnet18(5, cifar_stem=False, width=2,
                                                       activation="gelu"), (2, 3, 32, 32)),
    ("resnet50", lambda: models.resnet50(5, width=2, activation="gelu"), (2, 3, 16, 16)),
    ("resnet9", lambda: models.resnet9(5, width=2), (2, 3, 8, 8)),
    ("airbench", lambda: models.airbench(5, widths=(2, 4, 4)), (2, 3, 9, 9)),
    ("tiny_cnn", lambda: models.tiny_cnn(5), (2, 1, 8, 8)),
    ("custom_resnet", lambda: models.custom_resnet(5, width=2), (2, 3, 16, 16)),
    ("custom_resnet-no-bn-no-relu", lambda: models.custom_resnet(5, False, False, width=2),
     (2, 3, 8, 8)),
    ("mlp", lambda: models.mlp([12, 7, 5, 3], activation="elu"), (4, 3, 2, 2)),
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("build, input_shape", [(b, s) for _, b, s in WHOLE_NETWORKS],
                         ids=[name for name, _, _ in WHOLE_NETWORKS])
def test_whole_small_networks_gradients_in_random_directions(build, input_shape, training):
    minidl.set_default_dtype(np.float64)
    model = _Network(build())
    _randomise_batchnorm(model)
    model.train(training)
    assert_gradients(model, _float64(input_shape, seed=4), directional=True)


def test_mlp_gradients():
    minidl.set_default_dtype(np.float64)
    assert_gradients(_Network(models.mlp([6, 5, 4, 3], activation="elu")), _float64((4, 6), seed=5))


# ----------------------------------------------------------------------------- glue layers
def _tie_free(shape, seed):
    """Distinct values: a permutation of evenly spaced numbers, so no max ties."""
    size = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(size) / size - 0.5).reshape(shape)


@given(batch=st.integers(1, 3), channels=st.integers(1, 3), height=st.integers(1, 5),
       width=st.integers(1, 5))
def test_global_max_pool_gradients_and_values(batch, channels, height, width):
    x = _tie_free((batch, channels, height, width), seed=height * 7 + width)
    pool = L.GlobalMaxPool2d()
    np.testing.assert_array_equal(pool(x), x.max(axis=(2, 3)))
    assert_gradients(pool, x)


def test_global_max_pool_equals_max_pool_over_the_whole_map(xp):
    x = xp.asarray(_tie_free((2, 3, 4, 4), seed=1).astype(np.float32))
    dy = xp.asarray(_float64((2, 3), seed=2).astype(np.float32))
    ours, reference = L.GlobalMaxPool2d(), L.MaxPool2d(4)
    np.testing.assert_array_equal(minidl.to_numpy(ours(x)), minidl.to_numpy(reference(x)[:, :, 0, 0]))
    np.testing.assert_array_equal(minidl.to_numpy(ours.backward(dy)),
                                  minidl.to_numpy(reference.backward(dy[:, :, None, None])))


def test_scale_gradients_and_dtype():
    scale = models.Scale(0.125)
    x32 = _random_images((3, 4))
    assert scale(x32).dtype == np.float32
    np.testing.assert_allclose(scale(x32), 0.125 * x32)
    assert_gradients(scale, _float64((3, 4), seed=6))


def test_dirac_init_makes_the_first_filters_copy_their_channel():
    conv = L.Conv2d(3, 5, 3, padding=1, bias=False)
    models.dirac_init(conv)
    x = _random_images((2, 3, 6, 6))
    np.testing.assert_allclose(conv(x)[:, :3], x, atol=1e-6)
    narrow = L.Conv2d(3, 2, 3, padding=1, bias=False)
    models.dirac_init(narrow)  # fewer filters than channels: the first two copy theirs
    np.testing.assert_allclose(narrow(x), x[:, :2], atol=1e-6)
    with pytest.raises(ValueError, match="dirac_init: needs an odd kernel"):
        models.dirac_init(L.Conv2d(4, 2, 2))


# ----------------------------------------------------------------------------- whitening
def _correlated_images(n=40, seed=0):
    """Images whose neighbouring pixels and channels are correlated, like natural ones."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, 3, 11, 11))
    smooth = noise[:, :, 1:, 1:] + noise[:, :, :-1, :-1] + 0.5 * noise[:, :, :-1, 1:]
    mixing = np.array([[1.0, 0.5, 0.2], [0.3, 1.0, 0.4], [0.1, 0.6, 1.0]])
    return np.einsum("dc,nchw->ndhw", mixing, smooth)


def test_whitening_init_decorrelates_patches(xp):
    images = xp.asarray(_correlated_images())
    conv = L.Conv2d(3, 24, 2, bias=False).to(np.float64)
    if xp is not np:
        conv.to("gpu")
    eigenvalues = models.whitening_init(conv, images, eps=0.0, chunk_size=7)
    assert np.all(np.diff(eigenvalues) <= 0) and eigenvalues[-1] > 0
    out = minidl.to_numpy(conv(images))  # (N, 24, 9, 9)
    features = out.transpose(0, 2, 3, 1).reshape(-1, 24)
    covariance = features[:, :12].T @ features[:, :12] / len(features)
    np.testing.assert_allclose(covariance, np.eye(12), atol=1e-8)  # whitened
    np.testing.assert_allclose(features[:, 12:], -features[:, :12])  # the +/- pairs


def test_whitening_init_keeps_the_weight_dtype_and_checks_shapes():
    conv = L.Conv2d(3, 24, 2)
    models.whitening_init(conv, _correlated_images(8).astype(np.float32))
    assert conv.weight.data.dtype == np.float32 and np.isfinite(conv.weight.data).all()
    with pytest.raises(ValueError, match="needs 2 \\* 12 = 24 output channels, got 12"):
        models.whitening_init(L.Conv2d(3, 12, 2), _correlated_images(2))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, H, W\)"):
        models.whitening_init(L.Conv2d(3, 24, 2), _correlated_images(2)[:, :1])


def test_airbench_whitening_layer_is_set_from_the_training_images():
    net = models.airbench(widths=(4, 8, 8))
    images = _correlated_images(8).astype(np.float32)
    models.whitening_init(net.whiten, images)
    assert net(images[:, :, :10, :10]).shape == (8, 10)


# ----------------------------------------------------------------------------- PyTorch reference
def _torch_block(torch, block, activation):
    """A torchvision-style block with the same names as ours (conv1, bn1, ..., downsample)."""
    nn = torch.nn
    act = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "elu": nn.ELU,
           "gelu": nn.GELU}[activation]

    class TorchBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.names = list(block.body_names)
            for name in self.names:
                layer = getattr(block, name)
                if isinstance(layer, L.Conv2d):
                    module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                       layer.stride, layer.padding, bias=False)
                elif isinstance(layer, L.BatchNorm2d):
                    module = nn.BatchNorm2d(layer.weight.shape[0])
                else:
                    module = act()
                setattr(self, name, module)
            if block.downsample is not None:
                conv = block.downsample[0]
                self.downsample = nn.Sequential(
                    nn.Conv2d(conv.in_channels, conv.out_channels, 1, conv.stride, bias=False),
                    nn.BatchNorm2d(conv.out_channels))
            else:
                self.downsample = None
            self.act_out = act()

        def forward(self, x):
            out = x
            for name in self.names:
                out = getattr(self, name)(out)
            return self.act_out(out + (x if self.downsample is None else self.downsample(x)))

    return TorchBlock().double()


@pytest.mark.parametrize("block_class, in_channels, channels, stride, activation", [
    (models.BasicBlock, 4, 4, 1, "relu"),
    (models.BasicBlock, 3, 5, 2, "gelu"),
    (models.Bottleneck, 8, 2, 1, "elu"),
    (models.Bottleneck, 3, 2, 2, "leaky_relu"),
])
def test_blocks_match_pytorch(block_class, in_channels, channels, stride, activation):
    torch = pytest.importorskip("torch")
    minidl.set_default_dtype(np.float64)
    block = block_class(in_channels, channels, stride, activation)
    for name, param in block.named_parameters():  # BN gets a non-trivial scale and shift
        if name.startswith(("bn", "downsample.1")):
            param.data[...] = np.random.default_rng(len(name)).uniform(0.5, 1.5, param.shape)
    reference = _torch_block(torch, block, activation)
    reference.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in block.state_dict().items()},
                              strict=False)
    x = _float64((3, in_channels, 7, 6), seed=8)
    dy = _float64((3, channels * block.expansion, (7 - 1) // stride + 1, (6 - 1) // stride + 1), 9)
    x_torch = torch.from_numpy(x.copy()).requires_grad_(True)
    y_torch = reference(x_torch)
    y_torch.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(block(x), y_torch.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(block.backward(dy), x_torch.grad.numpy(), rtol=1e-9, atol=1e-11)
    torch_params = dict(reference.named_parameters())
    for name, param in block.named_parameters():
        np.testing.assert_allclose(param.grad, torch_params[name].grad.numpy(), rtol=1e-9,
                                   atol=1e-11, err_msg=name)
    torch_buffers = dict(reference.named_buffers())
    for name, buffer in block.named_buffers():  # the running statistics moved alike
        np.testing.assert_allclose(buffer, torch_buffers[name].numpy(), rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_matches_torchvision(depth):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    minidl.set_default_dtype(np.float64)
    ours = getattr(models, f"resnet{depth}")(num_classes=10, cifar_stem=False)
    theirs = getattr(torchvision.models, f"resnet{depth}")(num_classes=10).double().eval()
    state = {k: v.numpy() for k, v in theirs.state_dict().items() if "num_batches" not in k}
    state["fc.weight"] = state["fc.weight"].T  # torch stores (out, in), minidl (in, out)
    ours.load_state_dict(state)
    ours.eval()
    x = _float64((2, 3, 64, 64), seed=10)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(x), expected, rtol=1e-9, atol=1e-10)


def test_vgg11_width_scales_every_stage():
    from minidl.models import vgg11
    narrow = vgg11(10, batch_norm=False, width=16, hidden=32)
    convs = [layer for layer in narrow if isinstance(layer, L.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 128, 128]
    assert vgg11(10, batch_norm=False).num_parameters() == 9_750_922


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg11_signal_neither_vanishes_nor_explodes_at_init(batch_norm):
    # With PyTorch's default init the plain VGG's logits start ~1e-4 (six-fold shrink per
    # ReLU layer) and it does not train; He init keeps them O(1), with or without BN.
    x = np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32)
    logits = models.vgg11(10, batch_norm=batch_norm, width=16)(x)
    assert 0.1 < float(logits.std()) < 10.0
