"""The main job end to end: ``python -m sepconv train`` / ``evaluate`` through the real
command line (subprocesses), on a bundled data set with a tiny network."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from sepconv import datasets

TINY = ["--dataset", "ItalyPowerDemand", "--epochs", "2", "--filters", "4", "4",
        "--kernel-size", "3", "--batch-size", "32", "--no-progress"]
OUTPUTS = ("model.pt", "history.json", "results.json", "curves.png")


def child_env():
    """The environment of child processes: the sepconv under test first on their path
    (whatever their working folder), no torchrun variables, no fault hook."""
    env = dict(os.environ)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                "_SEPCONV_TRAIN_FAULT"):
        env.pop(key, None)
    import sepconv

    here = os.path.dirname(os.path.dirname(os.path.abspath(sepconv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "")
                                                  .split(os.pathsep) if p])
    return env


def run(args, cwd, timeout=240, prefix=None, fault=None):
    env = child_env()
    if fault:
        env["_SEPCONV_TRAIN_FAULT"] = fault  # see sepconv.train._fault_hook
    cmd = (prefix or []) + [sys.executable, "-m"] + args
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def train(tmp_path, out, *extra, prefix=None, fault=None):
    return run(["sepconv", "train", *TINY, "--out", str(out), *extra], tmp_path,
               prefix=prefix, fault=fault)


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


def torchrun(out, cwd, *extra, fault=None):
    return run(["torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "sepconv", "train", *TINY, "--out", str(out), "--max-norm", "0.3",
                *extra], cwd, fault=fault)


@pytest.fixture(scope="module")
def ddp_trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    out = tmp / "ddp"
    proc = torchrun(out, tmp)
    if proc.returncode != 0 and "gloo" in proc.stderr.lower() and "not" in proc.stderr.lower():
        pytest.skip("gloo backend unavailable")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, out, proc


def test_two_processes_data_parallel_gloo(ddp_trained):
    """torchrun with 2 CPU processes: shards, synchronised replicas, one writer."""
    tmp_path, out, proc = ddp_trained
    assert "data-parallel: 2 processes (gloo), 16 cases per process per step" in proc.stdout
    # Rank 0 alone prints the report and writes files.
    assert proc.stdout.count("Test accuracy on ItalyPowerDemand") == 1
    assert "largest parameter difference across ranks 0" in proc.stdout
    assert sorted(os.listdir(out)) == sorted(OUTPUTS + ("checkpoint.pt",))
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
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(50, 150, 1) (150, 150, 1) 2 False"


# --- a lean install ---------------------------------------------------------------------

TRAIN_ONLY = ("tqdm", "matplotlib", "sktime", "aeon", "pandas", "scipy", "sklearn")


def test_import_sepconv_imports_none_of_the_main_jobs_packages():
    """`import sepconv` needs torch and numpy alone: with tqdm, matplotlib, sktime and
    friends made unimportable it still imports, and in a full environment it imports none
    of them beyond what torch itself imports (torch.hub takes tqdm when present)."""
    code = (
        "import sys\n"
        "if sys.argv[1] == 'blocked':\n"
        f"    for m in {TRAIN_ONLY!r}: sys.modules[m] = None\n"
        "import torch\n"
        "before = set(sys.modules)\n"
        "import sepconv, sepconv.datasets\n"
        "print(sorted(m for m in set(sys.modules) - before\n"
        f"             if sys.modules[m] is not None and m.split('.')[0] in {TRAIN_ONLY!r}))\n"
        "print(sepconv.SeparableConv1D(2, 3)(torch.zeros(1, 5, 2)).shape)\n")
    for mode in ("blocked", "full"):
        proc = subprocess.run([sys.executable, "-c", code, mode], capture_output=True,
                              text=True, env=child_env())
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split("\n")[:2] == ["[]", "torch.Size([1, 3, 2])"], mode


BLOCKED_MAIN = (
    "import runpy, sys\n"
    "for m in sys.argv[1].split(','): sys.modules[m] = None\n"
    "sys.argv = ['python -m sepconv'] + sys.argv[2:]\n"
    "runpy.run_module('sepconv', run_name='__main__')\n")


@pytest.mark.parametrize("blocked, args, named", [
    ("tqdm,matplotlib,sktime,aeon", ["train"], "sktime (the data files), tqdm, matplotlib"),
    ("tqdm", ["train", "--dataset", "ItalyPowerDemand"], "(tqdm not installed)"),
    ("sktime,aeon", ["evaluate", "--model", "m.pt"], "(sktime (the data files) not"),
])
def test_main_job_without_the_train_extra_says_what_to_install(tmp_path, blocked, args,
                                                               named):
    proc = subprocess.run([sys.executable, "-c", BLOCKED_MAIN, blocked, *args,
                           *(["--out", str(tmp_path / "o")] if args[0] == "train" else [])],
                          cwd=tmp_path, capture_output=True, text=True, env=child_env())
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert 'pip install "sepconv[train]"' in lines[0] and named in lines[0]
    assert not (tmp_path / "o").exists()


def test_pyproject_keeps_the_library_lean_and_the_train_extra_complete():
    tomllib = pytest.importorskip("tomllib")
    root = os.path.join(os.path.dirname(__file__), "..")
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    names = lambda reqs: {re.split(r"[<>=!~;\[ ]", r, 1)[0].lower() for r in reqs}
    assert names(project["dependencies"]) == {"torch", "numpy"}
    extras = project["optional-dependencies"]
    assert names(extras["train"]) == {"sktime", "tqdm", "matplotlib"}
    assert "sepconv[train]" in extras["test"]  # the tests run the main job
    # what train.py reads its data from is what the extra installs
    assert datasets.PROVIDERS[0] == "sktime"


# --- checkpoints and resume -----------------------------------------------------------

def load_state(out):
    from sepconv.train import read_checkpoint

    return read_checkpoint(str(out / "checkpoint.pt"))


def assert_same_final_run(a, b):
    """Bitwise: weights, every epoch's numbers, test accuracy."""
    sa = torch.load(a / "model.pt", weights_only=True)
    sb = torch.load(b / "model.pt", weights_only=True)
    assert sa["state_dict"].keys() == sb["state_dict"].keys()
    for k in sa["state_dict"]:
        assert torch.equal(sa["state_dict"][k], sb["state_dict"][k]), k
    assert sa["test_accuracy"] == sb["test_accuracy"]
    assert json.loads((a / "history.json").read_text()) == \
        json.loads((b / "history.json").read_text())
    oa, ob = load_state(a)["optimizer"]["state"], load_state(b)["optimizer"]["state"]
    for i in oa:
        for k in oa[i]:
            assert torch.equal(oa[i][k], ob[i][k]), (i, k)


# `trained` ran TINY (ItalyPowerDemand, 67 cases, batch 32: 3 steps per epoch, 2 epochs)
# with these options; the interrupted runs below must end exactly where it did.
SAME = ("--max-norm", "0.3", "--l2", "1e-3", "--seed", "7")


def test_killed_and_interrupted_runs_resume_bitwise(trained, tmp_path):
    """SIGINT mid-epoch, then SIGKILL mid-epoch, then SIGKILL inside a checkpoint write:
    each resumed run continues, and the last ends bitwise equal to the uninterrupted run."""
    _, reference, _ = trained
    out = tmp_path / "run"
    # 1. SIGINT arrives at the start of step 2: that step finishes, is checkpointed.
    proc = train(tmp_path, out, *SAME, fault="SIGINT:step:2")
    assert proc.returncode == 128 + signal.SIGINT, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("sepconv train: stopped by SIGINT after epoch 1, step 2 of 3")
    assert f" --out {out} " in last and last.endswith(" --seed 7 --resume")
    assert "Traceback" not in proc.stderr
    state = load_state(out)
    assert (state["epoch"], state["step"], len(state["history"])) == (0, 2, 0)
    assert not (out / "model.pt").exists()
    # 2. Resume (with the command it printed, minus the interpreter), SIGKILL at step 5:
    # epoch 1 was checkpointed at its end, epoch 2 is cut after one step.
    command = last.split("resume with: python -m ")[1].split()
    proc = run(command, tmp_path, fault="SIGKILL:step:5")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "resumed from" in proc.stdout and "epoch 1, step 3 of 3" in proc.stdout
    state = load_state(out)
    assert (state["epoch"], state["step"], len(state["history"])) == (1, 0, 1)
    # 3. Resume, killed inside its first checkpoint write (end of epoch 2), after the
    # temporary is complete and before the rename: the old checkpoint stands.
    before = (out / "checkpoint.pt").read_bytes()
    proc = train(tmp_path, out, "--resume", fault="SIGKILL:save:1")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "checkpoint.pt").read_bytes() == before
    stale = [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].startswith(".checkpoint.pt.")
    # 4. Resume to the end: same weights, history, optimizer state as never interrupted.
    proc = train(tmp_path, out, "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resumed from" in proc.stdout and "the end of epoch 1" in proc.stdout
    assert sorted(os.listdir(out)) == sorted(OUTPUTS + ("checkpoint.pt",))  # tmp gone
    assert_same_final_run(reference, out)
    # 5. Resuming a finished run changes nothing.
    files = snapshot(out)
    proc = train(tmp_path, out, "--resume")
    assert proc.returncode == 0 and "finished its 2 epochs already" in proc.stdout
    assert snapshot(out) == files


def test_sigterm_from_outside_stops_after_a_step_with_a_checkpoint(tmp_path):
    out = tmp_path / "long"
    env = child_env()
    args = [a if a != "2" or i != TINY.index("--epochs") + 1 else "100000"
            for i, a in enumerate(TINY)]
    proc = subprocess.Popen([sys.executable, "-m", "sepconv", "train", *args, "--out",
                             str(out)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists() and proc.poll() is None:
            assert time.time() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("sepconv train: stopped by SIGTERM after epoch ")
    assert "--epochs 100000" in line and line.endswith("--resume")
    state = load_state(out)
    assert 1 <= state["epoch"] < 100000 and state["settings"]["epochs"] == 100000
    at = re.search(r"after epoch (\d+)(?:, step (\d+) of 3)?;", line)
    assert at, line
    if at.group(2):  # stopped mid-epoch: epoch N in progress, that many steps done
        assert (state["epoch"] + 1, state["step"]) == (int(at.group(1)), int(at.group(2)))
    else:
        assert (state["epoch"], state["step"]) == (int(at.group(1)), 0)
    assert len(state["history"]) == state["epoch"]


def snapshot(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in sorted(os.listdir(folder))}


@pytest.fixture
def resumable(trained, tmp_path, monkeypatch):
    """A copy of the finished tiny run without its outputs (so resuming would train),
    and the torch globals that train's setup touches restored afterwards."""
    _, reference, _ = trained
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(reference / "checkpoint.pt", out / "checkpoint.pt")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    threads = torch.get_num_threads()
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    rng = torch.get_rng_state()
    yield out
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    torch.set_rng_state(rng)


def rewrite(out, change):
    from sepconv.train import save_checkpoint

    state = load_state(out)
    change(state)
    save_checkpoint(str(out / "checkpoint.pt"), state)


def flip_a_byte(out):
    data = bytearray((out / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the payload's tensor data
    (out / "checkpoint.pt").write_bytes(bytes(data))


def truncate(out):
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 3])


def shrink_a_kernel(state):
    key = next(k for k in state["model"] if k.endswith("pointwise_kernel"))
    state["model"][key] = state["model"][key][..., :2]


@pytest.mark.parametrize("damage, extra, message", [
    (None, ["--dataset", "GunPoint"], "is a run with --dataset ItalyPowerDemand, this "
     "command asks for --dataset GunPoint; drop --dataset"),
    (None, ["--filters", "8", "8"], "is a run with --filters 4 4, this command asks for "
     "--filters 8 8"),
    (None, ["--kernel-size", "5"], "is a run with --kernel-size 3 3, this command asks "
     "for --kernel-size 5 5"),
    (None, ["--overwrite"], "pass one of them"),
    (flip_a_byte, [], "is corrupted (its contents do not match their sha256)"),
    (truncate, [], "is corrupted or not a sepconv checkpoint (torch.load failed"),
    (lambda out: (out / "checkpoint.pt").write_text("hello"), [], "is corrupted or not"),
    (lambda out: torch.save({"a": 1}, out / "checkpoint.pt"), [],
     "is not a checkpoint of `python -m sepconv train`"),
    (lambda out: (out / "checkpoint.pt").unlink(), [], "no checkpoint to continue from"),
    (lambda out: rewrite(out, shrink_a_kernel), [], "does not fit the model of its "
     "settings (RuntimeError: Error(s) in loading state_dict"),
    (lambda out: rewrite(out, lambda s: s["architecture"][0]["config"].update(filters=5)),
     [], "describes another model than its settings build"),
    (lambda out: rewrite(out, lambda s: s["data"].update(sha256="0" * 64)), [],
     "was trained on other data than the installed ItalyPowerDemand"),
    (lambda out: rewrite(out, lambda s: s.update(world_size=2)), [],
     "was written by 2 process(es), this run has 1"),
])
def test_resume_refuses_with_one_line_and_changes_nothing(resumable, capsys, damage,
                                                          extra, message):
    from sepconv import cli

    out = resumable
    if damage is not None:
        damage(out)
    (out / "curves.png").write_bytes(b"an older output")  # must survive too
    before = snapshot(out)
    code = cli.main(["train", *TINY, "--out", str(out), "--resume", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert snapshot(out) == before


def test_fresh_run_refuses_a_folder_holding_an_unfinished_run(resumable, capsys):
    from sepconv import cli

    before = snapshot(resumable)
    assert cli.main(["train", *TINY, "--out", str(resumable)]) == 2
    assert "checkpoint.pt of an unfinished run; pass --resume" in capsys.readouterr().err
    assert snapshot(resumable) == before


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    from sepconv.train import atomic_write

    path = tmp_path / "f.bin"
    atomic_write(str(path), lambda f: f.write(b"old"))
    assert path.read_bytes() == b"old"

    def half_then_fail(f):
        f.write(b"new but")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(path), half_then_fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]
    assert (os.stat(path).st_mode & 0o777) == (0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_torchrun_two_processes_killed_and_resumed_bitwise(ddp_trained, tmp_path):
    """torchrun, 2 processes: SIGTERM to both mid-epoch (rank 0 writes every rank's state),
    resume, SIGKILL both mid-epoch, resume: equal to the uninterrupted 2-process run."""
    _, reference, _ = ddp_trained
    out = tmp_path / "ddp"
    proc = torchrun(out, tmp_path, fault="SIGTERM:step:2")
    assert proc.returncode != 0
    assert proc.stderr.count("stopped by SIGTERM after epoch 1, step 2 of 3") == 1
    assert "resume with: torchrun --standalone --nproc-per-node 2 -m sepconv" in proc.stderr
    state = load_state(out)
    assert (state["epoch"], state["step"], state["world_size"]) == (0, 2, 2)
    assert len(state["ranks"]) == 2 and state["ranks"][0]["order"] != state["ranks"][1]["order"]
    proc = torchrun(out, tmp_path, "--resume", fault="SIGKILL:step:5")
    assert proc.returncode != 0
    assert (load_state(out)["epoch"], load_state(out)["step"]) == (1, 0)
    proc = torchrun(out, tmp_path, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    assert_same_final_run(reference, out)


def test_resume_command_is_a_shell_command_that_gives_back_the_arguments():
    """The printed ``--resume`` line, split by a POSIX shell's rules (shlex), is the run's
    own arguments less --overwrite, with --out added when it came from the default."""
    import shlex

    from sepconv.train import PROG, resume_command

    argv = ["--epochs", "2", "--out", "run's dir/a b", "--overwrite", "--note", "$x;*"]
    want = ["--epochs", "2", "--out", "run's dir/a b", "--note", "$x;*"]
    assert shlex.split(resume_command(argv, "ignored", 1)) == (
        [*PROG.split(), "train", *want, "--resume"])
    assert shlex.split(resume_command(["--epochs", "2"], "out dir", 2)) == [
        "torchrun", "--standalone", "--nproc-per-node", "2", "-m", "sepconv", "train",
        "--epochs", "2", "--out", "out dir", "--resume"]


def test_main_jobs_adam_is_torchs_adam_fused_where_it_can_be():
    """The main job's optimizer (``train.adam``) takes torch's fused Adam where this torch
    has it (CPU since torch 2.4): the same updates as the plain ``torch.optim.Adam`` to
    float32 rounding, and checkpoints load either way."""
    from sepconv import train
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=g) for s in ((5, 3), (7,), (2, 4, 6))]
    ours = [torch.nn.Parameter(p.clone()) for p in start]
    plain = [torch.nn.Parameter(p.clone()) for p in start]
    opt, ref = train.adam(ours, 3e-3), torch.optim.Adam(plain, lr=3e-3)
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4):
        assert opt.defaults["fused"] is True
    for _ in range(20):
        grads = [torch.randn(p.shape, generator=g) for p in start]
        for a, b, gr in zip(ours, plain, grads):
            a.grad, b.grad = gr.clone(), gr.clone()
        opt.step()
        ref.step()
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    train.adam(plain, 3e-3).load_state_dict(ref.state_dict())
    torch.optim.Adam(ours, lr=3e-3).load_state_dict(opt.state_dict())
