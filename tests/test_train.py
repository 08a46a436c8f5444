"""The main job end to end: ``python -m sepconv train`` / ``evaluate`` through the real
command line (subprocesses), on a bundled data set with a tiny network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from sepconv import datasets

TINY = ["--dataset", "ItalyPowerDemand", "--epochs", "2", "--filters", "4", "4",
        "--kernel-size", "3", "--batch-size", "32", "--no-progress"]
OUTPUTS = ("model.pt", "history.json", "results.json", "curves.png")


def run(args, cwd, timeout=240, prefix=None):
    env = dict(os.environ)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = (prefix or []) + [sys.executable, "-m"] + args
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def train(tmp_path, out, *extra, prefix=None):
    return run(["sepconv", "train", *TINY, "--out", str(out), *extra], tmp_path,
               prefix=prefix)


def pointwise_norms(state_dict):
    return [v.reshape(-1, v.shape[-1]).norm(dim=0)
            for k, v in state_dict.items() if k.endswith("pointwise_kernel")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run shared by several tests; max-norm 0.3 so the constraint binds."""
    tmp = tmp_path_factory.mktemp("train")
    out = tmp / "run"
    proc = train(tmp, out, "--max-norm", "0.3", "--l2", "1e-3", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    return tmp, out, proc


def test_train_writes_model_curves_and_compares_with_published(trained):
    tmp, out, proc = trained
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2 and results["epochs"] == 2
    # The accuracy printed is the one recorded, and the published figures sit beside it.
    printed = re.search(r"Test accuracy on ItalyPowerDemand \(1029 test cases.*?\): "
                        r"([\d.]+)%", proc.stdout)
    assert printed, proc.stdout
    assert float(printed.group(1)) == pytest.approx(100 * results["test_accuracy"], abs=0.05)
    assert "FCN" in proc.stdout and "96.1%" in proc.stdout
    assert "doi:10.1007/s10618-019-00619-1" in proc.stdout
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["dataset"] == "ItalyPowerDemand" and ckpt["classes"] == ["1", "2"]
    assert set(ckpt["normalization"]) >= {"mean", "std"}
    convs = [a for a in ckpt["architecture"] if a["class_name"] == "SeparableConv1D"]
    assert [c["config"]["filters"] for c in convs] == [4, 4]
    assert convs[0]["config"]["pointwise_constraint"]["class_name"] == "MaxNorm"


def test_regularizer_in_loss_and_constraint_holds(trained):
    _, out, _ = trained
    history = json.loads((out / "history.json").read_text())
    ckpt = torch.load(out / "model.pt", weights_only=True)
    # The logged penalty is 1e-3 * sum of squares of the kernels (weights after training
    # differ only by the last epoch's steps, so compare loosely).
    kernels = [v for k, v in ckpt["state_dict"].items() if k.endswith("_kernel")]
    expected = 1e-3 * sum(float((k ** 2).sum()) for k in kernels)
    assert history[-1]["penalty"] > 0
    assert history[-1]["penalty"] == pytest.approx(expected, rel=0.5)
    norms = torch.cat(pointwise_norms(ckpt["state_dict"]))
    assert float(norms.max()) <= 0.3 + 1e-5
    assert float(norms.max()) == pytest.approx(0.3, abs=1e-4)  # it binds


def test_evaluate_reproduces_accuracy(trained):
    tmp, out, _ = trained
    results = json.loads((out / "results.json").read_text())
    proc = run(["sepconv", "evaluate", "--model", str(out / "model.pt")], tmp)
    assert proc.returncode == 0, proc.stderr
    acc = float(re.search(r"Test accuracy on ItalyPowerDemand \(1029 test cases\): "
                          r"([\d.]+)%", proc.stdout).group(1))
    assert acc == pytest.approx(100 * results["test_accuracy"], abs=0.005)
    assert "same as this evaluation" in proc.stdout


def _offline_prefix():
    """``unshare -n`` (no network at all) where this machine allows it."""
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return ["unshare", "-n"] if probe.returncode == 0 else None


def test_same_seed_same_model_offline(trained, tmp_path):
    """A second run with the same seed, without network where possible, is identical."""
    _, out, _ = trained
    proc = train(tmp_path, tmp_path / "again", "--max-norm", "0.3", "--l2", "1e-3",
                 "--seed", "7", prefix=_offline_prefix())
    assert proc.returncode == 0, proc.stderr
    a = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "again" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert json.loads((out / "history.json").read_text()) == \
        json.loads((tmp_path / "again" / "history.json").read_text())


def test_refuses_to_overwrite_without_flag(trained):
    tmp, out, _ = trained
    before = (out / "model.pt").read_bytes()
    proc = train(tmp, out)
    assert proc.returncode == 2
    assert "--overwrite" in proc.stderr and "model.pt" in proc.stderr
    assert (out / "model.pt").read_bytes() == before


def test_bad_input_through_the_command_line(tmp_path):
    proc = run(["sepconv", "train", "--dataset", "NoSuchSet", "--out", str(tmp_path / "o")],
               tmp_path)
    assert proc.returncode == 2
    assert "Unknown data set 'NoSuchSet'. Known data sets: GunPoint, ItalyPowerDemand" \
        in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "NoSuchSet"], "Known data sets: GunPoint, ItalyPowerDemand"),
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--dropout", "1"], "--dropout must be in [0.0, 1.0)"),
    (["train", "--lr", "0"], "--lr must be in (0.0"),
    (["train", "--padding", "full"], "invalid choice"),
    (["train", "--filters", "8", "8", "--kernel-size", "3", "3", "3"], "one per block"),
    (["train", "--dataset", "ItalyPowerDemand", "--padding", "valid", "--kernel-size", "20"],
     "too short"),
    (["evaluate", "--model", "does/not/exist.pt"], "no such file"),
])
def test_bad_input_exits_nonzero_with_message(tmp_path, capsys, args, message):
    """What `python -m sepconv <command>` runs (cli -> train.main), in this process."""
    from sepconv import cli

    argv = args + ["--out", str(tmp_path / "o")] if args[0] == "train" else args
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", ["text", "torch-dict"])
def test_evaluate_rejects_files_that_are_not_sepconv_models(tmp_path, capsys, content):
    path = tmp_path / "model.pt"
    if content == "text":
        path.write_text("not a model")
    else:
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    from sepconv import cli

    assert cli.main(["evaluate", "--model", str(path)]) == 2
    assert "is not a sepconv model file" in capsys.readouterr().err


def test_two_processes_data_parallel_gloo(tmp_path):
    """torchrun with 2 CPU processes: shards, synchronised replicas, one writer."""
    out = tmp_path / "ddp"
    proc = run(["torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "sepconv", "train", *TINY, "--out", str(out), "--max-norm", "0.3"],
               tmp_path, prefix=None)
    if proc.returncode != 0 and "gloo" in proc.stderr.lower() and "not" in proc.stderr.lower():
        pytest.skip("gloo backend unavailable")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data-parallel: 2 processes (gloo), 16 cases per process per step" in proc.stdout
    # Rank 0 alone prints the report and writes files.
    assert proc.stdout.count("Test accuracy on ItalyPowerDemand") == 1
    assert "largest parameter difference across ranks 0" in proc.stdout
    assert sorted(os.listdir(out)) == sorted(OUTPUTS)
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2 and results["replicas_max_abs_difference"] == 0
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert float(torch.cat(pointwise_norms(ckpt["state_dict"])).max()) <= 0.3 + 1e-5
    ev = run(["sepconv", "evaluate", "--model", str(out)], tmp_path)
    assert ev.returncode == 0 and "same as this evaluation" in ev.stdout


# --- the data-set reader, against arrays written out by hand --------------------------

TS = """# comment
@problemName Toy
@timeStamps false
@univariate false
@dimensions 2
@equalLength false
@classLabel true b a
@data
1,2,3:4,5,6:a
7,?:8,9:b
"""


def test_read_ts_and_padding(tmp_path):
    path = tmp_path / "Toy_TRAIN.ts"
    path.write_text(TS)
    series, labels, classes = datasets.read_ts(str(path))
    assert classes == ["b", "a"] and labels == ["a", "b"]
    np.testing.assert_array_equal(series[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(series[1][:, 1], [8, 9])
    assert np.isnan(series[1][1, 0])
    padded = datasets._pad(series, 3)
    np.testing.assert_array_equal(padded[1, 2], [0, 0])


def test_normalizer_uses_train_statistics_and_ignores_padding():
    x = np.array([[[1.0], [3.0], [0.0]], [[5.0], [7.0], [9.0]]])
    lengths = np.array([2, 3])
    norm = datasets.Normalizer.fit(x, lengths)
    values = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    assert norm.mean[0] == pytest.approx(values.mean())
    assert norm.std[0] == pytest.approx(values.std())
    z = norm(x, lengths)
    assert z[0, 2, 0] == 0.0
    assert z[1, 0, 0] == pytest.approx((5.0 - values.mean()) / values.std())
    assert datasets.Normalizer.from_dict(norm.to_dict()) == norm


def test_bundled_sets_load_offline_without_importing_their_package():
    code = ("import sys, sepconv.datasets as d; s = d.load('GunPoint'); "
            "print(s.x_train.shape, s.x_test.shape, s.n_classes, "
            "any(m in sys.modules for m in ('sktime', 'aeon', 'pandas')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(50, 150, 1) (150, 150, 1) 2 False"
