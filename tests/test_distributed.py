"""minidl.distributed: collectives, DataParallel, SyncBatchNorm, and their failures.

The multi-process checks launch ``mpiexec -n 2 python tests/distributed_scripts/X.py``
in a subprocess with a time limit (skipped with a reason when mpi4py or mpiexec is
missing); each script prints a ``PASS`` line per check and rank. The rest runs in this
process, where minidl.distributed is never initialised: world size 1.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minidl
import minidl.distributed as dist
from minidl import layers as L
from minidl.data.sharding import shard_order, shard_size
from minidl.gradcheck import assert_gradients

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_scripts")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = shutil.which("mpiexec")
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    not (HAVE_MPI4PY and MPIEXEC),
    reason=f"needs mpi4py and mpiexec: {dist.INSTALL_HINT}")


def run_two_ranks(script, timeout=60, ranks=2, args=()):
    """Run a script under ``mpiexec -n ranks`` (plain python if ``ranks`` is 0); return
    (exit code, stdout + stderr)."""
    # PYTHONPATH: this checkout's minidl, not an installed one, in the examples too.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=ROOT, MINIDL_DEVICE="cpu")
    for variable in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE"):
        env.pop(variable, None)  # in case pytest itself runs under a launcher
    try:
        command = [sys.executable, script, *args]
        if ranks:
            command = [MPIEXEC, "-n", str(ranks)] + command
        done = subprocess.run(command, cwd=SCRIPTS,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{script} did not finish within {timeout} s (a hang?):\n"
                    f"{expired.stdout}\n{expired.stderr}")
    return done.returncode, done.stdout + done.stderr


def passed_checks(output):
    """{(check, rank)} of the PASS lines."""
    return {(line.split()[1], int(line.split()[3]))
            for line in output.replace("PASS ", "\nPASS ").splitlines() if line.startswith("PASS ")}


def assert_passed_on_both_ranks(output, checks):
    found = passed_checks(output)
    missing = [(check, r) for check in checks for r in (0, 1) if (check, r) not in found]
    assert not missing, f"checks that did not pass: {missing}\n{output}"


# ---------------------------------------------------------------------------- two ranks
@needs_mpi
def test_collectives_on_two_ranks():
    code, output = run_two_ranks("collectives.py")
    assert code == 0, output
    assert_passed_on_both_ranks(output, ["collectives", "start_all_reduce", "all_gather_text"])


@needs_mpi
def test_data_parallel_equals_one_process_on_the_whole_batch():
    """2 ranks x 32 == 1 x 64 after 5 SGD-momentum steps (max |diff| <= 1e-12, float64):
    MLP, CNN (overlap on/off, one or several buckets), CNN with SyncBatchNorm."""
    code, output = run_two_ranks("equivalence.py")
    assert code == 0, output
    assert_passed_on_both_ranks(output, ["equivalence-mlp", "equivalence-cnn",
                                         "equivalence-bn_cnn", "plain-batchnorm-differs"])
    assert sum(line.count("PASS equivalence-cnn") for line in output.splitlines()) == 6, output


@needs_mpi
def test_sync_batchnorm_gradient_check_across_ranks():
    code, output = run_two_ranks("sync_bn_gradcheck.py")
    assert code == 0, output
    assert_passed_on_both_ranks(output, [f"sync-bn-gradcheck-{i}" for i in range(7)])


@needs_mpi
def test_a_failing_rank_ends_every_rank_with_the_error():
    code, output = run_two_ranks("fault.py", timeout=30)
    assert code != 0, output
    assert "deliberate failure on rank 1" in output
    assert "aborting every rank" in output
    assert "the abort did not happen" not in output


@needs_mpi
def test_a_model_that_differs_between_ranks_is_refused_on_every_rank():
    code, output = run_two_ranks("mismatch.py")
    assert code == 0, output
    assert_passed_on_both_ranks(output, ["mismatch-refused"])
    assert output.count("DataParallel: the model differs between ranks") == 2
    assert "rank 1 has ['0.weight (8, 17) float32'" in output


@needs_mpi
def test_one_rank_goes_through_mpi_and_changes_nothing():
    code, output = run_two_ranks("one_rank.py", ranks=1)
    assert code == 0, output
    assert {("one-rank-collectives", 0), ("one-rank-data-parallel", 0)} <= passed_checks(output)


@needs_mpi
@pytest.mark.gpu
@pytest.mark.skipif(not minidl.gpu_available(), reason="needs CuPy and a GPU (NCCL path)")
def test_one_gpu_goes_through_nccl_and_changes_nothing():
    code, output = run_two_ranks("one_rank.py", ranks=1, args=("--gpu",), timeout=120)
    assert code == 0, output
    assert {("one-rank-collectives", 0), ("one-rank-data-parallel", 0)} <= passed_checks(output)


@needs_mpi
def test_sharded_loaders_and_the_trainer_on_two_ranks(tmp_path):
    """Shards disjoint, covering, equal in number, reshuffled per epoch, rank 0's seed;
    the Trainer's History equal on both ranks and validation averaged exactly; only rank 0
    writes; a mid-run checkpoint resumes bit-identically; another world size is refused."""
    code, output = run_two_ranks("trainer.py", args=(str(tmp_path),), timeout=90)
    assert code == 0, output
    assert_passed_on_both_ranks(output, ["loader-shards", "loader-different-data-refused",
                                         "trainer-history", "trainer-resume"])
    assert sorted(os.listdir(tmp_path)) == ["epoch1.npz", "epoch2.npz"]
    model = minidl.models.mlp([8, 16, 3])
    trainer = minidl.train.Trainer(dist.DataParallel(model), minidl.losses.CrossEntropyLoss(),
                                   minidl.optim.SGD(model.parameters(), lr=0.1), quiet=True)
    x, y = np.zeros((4, 8)), np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match=r"written by a run of 2 process\(es\), this one has 1"):
        trainer.fit(minidl.data.DataLoader(x, y, batch_size=2), epochs=3,
                    resume=str(tmp_path / "epoch2.npz"))


@needs_mpi
def test_example_on_two_ranks_equals_one_process_with_the_whole_batch(tmp_path):
    """mnist_mlp --smoke: 2 ranks x batch 50 --distributed == 1 process x batch 100 (the
    shards of one shuffled order are the big batch's rows), and only rank 0 writes."""
    script = os.path.join(ROOT, "examples", "mnist_mlp.py")
    common = ["--smoke", "--quiet", "--epochs", "2"]
    code, one = run_two_ranks(script, ranks=0, args=(*common, "--out", str(tmp_path / "one")))
    assert code == 0, one
    code, two = run_two_ranks(script, args=(*common, "--distributed", "--batch-size", "50",
                                            "--out", str(tmp_path / "two")), timeout=120)
    assert code == 0, two
    assert two.count("mlp_512_512: test") == 1, two  # printed by rank 0 only
    results = [json.loads((tmp_path / run / "mlp_512_512_result.json").read_text())
               for run in ("one", "two")]
    for key in ("train_acc", "val_acc", "test_acc"):
        assert results[0][key] == results[1][key], (key, results)
    histories = [json.loads((tmp_path / run / "mlp_512_512_history.json").read_text())
                 for run in ("one", "two")]
    for key in ("train_loss", "val_loss"):  # float32, summed in another order
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-5)


# ---------------------------------------------------------------------------- world size 1
def test_without_init_everything_is_world_size_one():
    assert not dist.is_initialized() and dist.backend_name() is None
    assert dist.rank() == 0 and dist.world_size() == 1
    x = np.arange(6.0).reshape(2, 3)
    for op in dist.OPS:
        assert dist.all_reduce(x, op) is x
    assert np.array_equal(x, np.arange(6.0).reshape(2, 3))
    assert dist.broadcast(x) is x
    assert dist.start_all_reduce(x).wait() is x
    dist.barrier()
    assert dist.all_gather_text("abc") == ["abc"]


def test_collective_argument_errors():
    with pytest.raises(ValueError, match=r"op must be one of 'sum', 'mean', 'max', 'min', "
                                         r"got 'prod'"):
        dist.all_reduce(np.ones(3), "prod")
    with pytest.raises(TypeError, match="expected a NumPy or CuPy array, got list"):
        dist.all_reduce([1.0, 2.0])
    with pytest.raises(TypeError, match="'mean' needs a float array"):
        dist.all_reduce(np.ones(3, dtype=np.int64), "mean")
    with pytest.raises(TypeError, match="integer or float array, got dtype bool"):
        dist.broadcast(np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="C-contiguous"):
        dist.all_reduce(np.ones((4, 4))[:, ::2])


def test_init_says_what_to_install_without_mpi4py(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes "from mpi4py import MPI" fail
    with pytest.raises(ImportError, match=r"pip install mpi4py mpich"):
        dist.init("mpi")
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match=r"backend must be one of 'mpi', 'nccl', got 'gloo'"):
        dist.init("gloo")


def test_data_parallel_under_mpiexec_without_init_is_an_error(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"mpiexec with 2 processes but .*init\(\) was not"):
        dist.DataParallel(L.Linear(3, 2))


def test_data_parallel_argument_errors():
    with pytest.raises(TypeError, match="DataParallel: model must be a Module, got list"):
        dist.DataParallel([L.Linear(3, 2)])
    with pytest.raises(ValueError, match=r"DataParallel: bucket_mb must be a real number in \(0"):
        dist.DataParallel(L.Linear(3, 2), bucket_mb=0)
    with pytest.raises(TypeError, match="DataParallel: overlap must be True or False"):
        dist.DataParallel(L.Linear(3, 2), overlap="yes")


def test_data_parallel_alone_is_the_model():
    minidl.set_default_dtype(np.float64)
    model = minidl.models.mlp([6, 5, 3])
    wrapped = dist.DataParallel(model, bucket_mb=1e-4)
    x = np.random.default_rng(0).standard_normal((4, 6))
    dy = np.random.default_rng(1).standard_normal((4, 3))
    y = wrapped(x)
    dx = wrapped.backward(dy)
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    assert np.array_equal(model(x), y)
    assert np.array_equal(model.backward(dy), dx)
    for grad, param in zip(grads, model.parameters()):
        assert np.array_equal(grad, param.grad)
    assert list(wrapped.state_dict()) == ["module." + k for k in model.state_dict()]


# ---------------------------------------------------------------------------- SyncBatchNorm
stateless = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow], max_examples=10)


def random_batchnorm(kind, channels, mode, seed):
    layer = kind(channels, affine=mode != "no_affine", weight=mode != "no_scale")
    draw = np.random.default_rng(seed)
    for param in layer.parameters():
        param.data[...] = draw.uniform(0.5, 2.0, channels)
    layer.running_mean[...] = draw.standard_normal(channels)
    layer.running_var[...] = draw.uniform(0.5, 2.0, channels)
    return layer


@stateless
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 3), w=st.integers(2, 3),
       mode=st.sampled_from(["affine", "no_scale", "no_affine"]), training=st.booleans(),
       seed=st.integers(0, 2**16))
def test_sync_batchnorm2d_alone_matches_batchnorm2d_and_its_gradients(n, c, h, w, mode,
                                                                      training, seed):
    minidl.set_default_dtype(np.float64)
    sync = random_batchnorm(L.SyncBatchNorm2d, c, mode, seed).train(training)
    plain = random_batchnorm(L.BatchNorm2d, c, mode, seed).train(training)
    x = np.random.default_rng([seed, 0]).standard_normal((n, c, h, w)) * 2 + 1
    dy = np.random.default_rng([seed, 1]).standard_normal(x.shape)
    np.testing.assert_allclose(sync(x), plain(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(sync.backward(dy), plain.backward(dy), rtol=1e-12, atol=1e-12)
    for (name, a), (_, b) in zip(sync.state_dict().items(), plain.state_dict().items()):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13, err_msg=name)
    for a, b in zip(sync.parameters(), plain.parameters()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    assert_gradients(sync, x, dy)


@pytest.mark.parametrize("training", [True, False])
def test_sync_batchnorm1d_gradients_alone(training):
    layer = random_batchnorm(L.SyncBatchNorm1d, 4, "affine", 3).train(training)
    x = np.random.default_rng(0).standard_normal((2, 4))
    assert_gradients(layer, x, np.random.default_rng(1).standard_normal((2, 4)))


def test_sync_batchnorm_errors():
    with pytest.raises(ValueError, match="SyncBatchNorm1d: expected more than 1 value per "
                                         "channel over all ranks"):
        L.SyncBatchNorm1d(3)(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"SyncBatchNorm2d: expected input of shape \(N, C, H"):
        L.SyncBatchNorm2d(3)(np.ones((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="SyncBatchNorm2d: num_features must be a positive"):
        L.SyncBatchNorm2d(0)


def test_sync_batchnorm_on_an_empty_batch_is_batchnorm():
    for kind, shape in ((L.SyncBatchNorm1d, (0, 3)), (L.SyncBatchNorm2d, (0, 3, 2, 2))):
        sync, plain = random_batchnorm(kind, 3, "affine", 0), random_batchnorm(
            getattr(L, kind.__name__[4:]), 3, "affine", 0)
        x = np.zeros(shape, dtype=np.float32)
        assert sync(x).shape == plain(x).shape == shape
        assert sync.backward(np.zeros(shape, np.float32)).shape == shape
        for (name, a), (_, b) in zip(sync.state_dict().items(), plain.state_dict().items()):
            assert np.array_equal(a, b), name


def test_convert_sync_batchnorm_keeps_order_parameters_statistics_and_mode():
    bn = L.BatchNorm2d(4, momentum=0.3, weight=False)
    bn.running_mean[...] = 2.0
    model = L.Sequential(L.Conv2d(3, 4, 3), bn, L.ReLU(),
                         L.Residual(L.Sequential(L.Conv2d(4, 4, 1), L.BatchNorm2d(4))),
                         L.Flatten(), L.Linear(4, 6), L.BatchNorm1d(6)).eval()
    params, keys = model.parameters(), list(model.state_dict())
    converted = L.convert_sync_batchnorm(model)
    assert converted is model
    assert [type(layer).__name__ for layer in model] == [
        "Conv2d", "SyncBatchNorm2d", "ReLU", "Residual", "Flatten", "Linear", "SyncBatchNorm1d"]
    assert type(model[3].body[1]) is L.SyncBatchNorm2d
    assert list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert model[1].momentum == 0.3 and model[1].weight is None and model[1].running_mean[0] == 2
    assert not model[1].training
    assert type(L.convert_sync_batchnorm(L.BatchNorm1d(2))) is L.SyncBatchNorm1d


# ---------------------------------------------------------------------------- sharding
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), world=st.integers(1, 5), drop_last=st.booleans(),
       seed=st.integers(0, 2**16))
def test_shards_are_disjoint_cover_the_data_and_have_equal_sizes(n, world, drop_last, seed):
    order = np.random.default_rng(seed).permutation(n)
    if drop_last and n < world:
        with pytest.raises(ValueError, match="leave rank 0 of"):
            shard_order(order, 0, world, drop_last=True)
        return
    shards = [shard_order(order, r, world, drop_last) for r in range(world)]
    sizes = {len(shard) for shard in shards}
    assert sizes == {shard_size(n, world, drop_last)}
    everything = np.concatenate(shards)
    if drop_last:  # the first world * (n // world) positions of the order, each once
        assert np.array_equal(np.sort(everything), np.sort(order[:world * (n // world)]))
    else:  # every sample at least once; the padding repeats the order's start
        assert set(everything.tolist()) == set(range(n))
        assert len(everything) - n == (-n) % world


def test_shards_match_torch_distributed_sampler():
    torch = pytest.importorskip("torch")
    from torch.utils.data.distributed import DistributedSampler
    for n, world, drop_last in [(10, 3, False), (10, 3, True), (7, 4, False), (2, 5, False)]:
        for epoch in (0, 1):
            samplers = [DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=True,
                                           seed=3, drop_last=drop_last) for r in range(world)]
            for sampler in samplers:
                sampler.set_epoch(epoch)
            generator = torch.Generator()
            generator.manual_seed(3 + epoch)
            order = torch.randperm(n, generator=generator).numpy()  # the sampler's order
            for r, sampler in enumerate(samplers):
                assert shard_order(order, r, world, drop_last).tolist() == list(sampler)


def test_shard_order_errors():
    with pytest.raises(ValueError, match=r"shard_order: rank must be an integer in \[0, 1\]"):
        shard_order(np.arange(4), 2, 2)
    with pytest.raises(TypeError, match="shard_order: world_size must be a positive integer"):
        shard_order(np.arange(4), 0, 2.0)
    with pytest.raises(TypeError, match="order must be a 1-D integer array"):
        shard_order(np.ones(4), 0, 2)
