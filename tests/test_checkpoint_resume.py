"""Resume: SIGKILL mid-epoch then restart continues from the mid-epoch checkpoint; truncated files are refused."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from iared_video.engine import checkpoint as ckpt

SCRIPT = textwrap.dedent('''
    import sys, time, torch
    from torch.utils.data import DataLoader, Dataset
    from iared_video.methods import load_config
    from iared_video.engine.logging import setup_logging
    from iared_video.engine.trainer import train

    class Slow(Dataset):
        def __len__(self):
            return 32
        def __getitem__(self, i):
            time.sleep(float(sys.argv[2]))
            g = torch.Generator().manual_seed(i)
            return {"inputs": torch.randn(3, 2, 32, 32, generator=g), "label": i % 2, "index": i}

    def loader_fn(cfg, split):
        return DataLoader(Slow(), batch_size=4, shuffle=split == "train", generator=torch.Generator())

    cfg = load_config(None, ["MODEL.NUM_CLASSES", "2", "MODEL.EMBED_DIM", "16", "MODEL.DEPTH", "2",
                             "MODEL.NUM_HEADS", "2", "DATA.NUM_FRAMES", "2", "DATA.TRAIN_CROP_SIZE", "32",
                             "DATA.TEST_CROP_SIZE", "32", "IARED.INTERPRETER_EPOCHS", "1", "IARED.BACKBONE_EPOCHS",
                             "2", "IARED.INTERPRETER_DIM", "8", "OUTPUT_DIR", sys.argv[1], "LOG_PERIOD", "1",
                             "TRAIN.CHECKPOINT_ITER_PERIOD", "2", "TRAIN.EVAL_PERIOD", "0", "DEVICE", "cpu"])
    setup_logging(cfg.OUTPUT_DIR)
    train(cfg, loader_fn=loader_fn)
''')


def _start(script, out, delay):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(out), str(delay)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_mid_epoch(out, proc, timeout=120.0):
    """Wait until a mid-epoch checkpoint of the second stage (global epoch 2) exists."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = [os.path.basename(p) for p in ckpt.list_checkpoints(str(out))]
        mid = [n for n in names if n.startswith("checkpoint_epoch_00002_iter_")]
        if mid:
            return mid[-1]
        assert proc.poll() is None, "training ended before a mid-epoch checkpoint appeared"
        time.sleep(0.05)
    raise TimeoutError("no mid-epoch checkpoint")


@pytest.mark.timeout(300)
def test_sigkill_mid_epoch_then_resume(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    proc = _start(script, out, 0.05)
    _wait_for_mid_epoch(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = ckpt.list_checkpoints(str(out))[-1]
    payload = ckpt.load_checkpoint(newest)
    assert payload["stage_name"] == "backbone_g1" and int(payload["epoch"]) == 0 and not payload["epoch_done"]
    done_iters = int(payload["iteration"])
    assert done_iters >= 2 and done_iters % 2 == 0
    log_before = (out / "stdout.log").read_text()
    assert subprocess.run([sys.executable, str(script), str(out), "0"], timeout=240).returncode == 0
    log_after = (out / "stdout.log").read_text()[len(log_before):]
    assert f"resuming from {newest}: stage backbone_g1 epoch 1 iteration {done_iters}" in log_after
    # the finished interpreter stage never re-runs; the backbone stage goes on from the next iteration
    assert '"stage": "interpreter_g1"' not in log_after
    first_iter = log_after.split('"_type": "train_iter"', 1)[1]
    assert '"stage": "backbone_g1", "epoch": "1/2"' in first_iter.split("\n")[0]
    assert f'"iter": "{done_iters + 1}/8"' in first_iter.split("\n")[0]
    final = ckpt.load_checkpoint(ckpt.list_checkpoints(str(out))[-1])
    assert final["stage_name"] == "backbone_g1" and int(final["epoch"]) == 1 and final["epoch_done"]
    assert os.path.basename(ckpt.list_checkpoints(str(out))[-1]) == "checkpoint_epoch_00003.pyth"


def test_truncated_checkpoint_is_refused(tmp_path):
    from iared_video.engine.logging import setup_logging

    setup_logging(str(tmp_path))
    folder = ckpt.checkpoint_dir(str(tmp_path))
    base = {"model_state": {"w": torch.ones(64)}, "stage": 0, "epoch": 0, "iteration": 0, "global_epoch": 1,
            "rng": ckpt.rng_state(), "cfg": "A: 1"}
    ckpt.save_checkpoint(os.path.join(folder, ckpt.checkpoint_name(1)), {**base, "epoch_done": True})
    newest = os.path.join(folder, ckpt.checkpoint_name(2, 4))
    ckpt.save_checkpoint(newest, {**base, "iteration": 4})
    size = os.path.getsize(newest)
    with open(newest, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.load_checkpoint(newest)
    path, payload = ckpt.load_newest_valid(str(tmp_path))
    assert path.endswith("checkpoint_epoch_00001.pyth") and payload["epoch_done"]
    log = (tmp_path / "stdout.log").read_text()
    assert "refusing checkpoint" in log and "checkpoint_epoch_00002_iter_000004.pyth" in log


def test_checkpoint_order_and_weights_only_rng(tmp_path):
    folder = ckpt.checkpoint_dir(str(tmp_path))
    for name in ("checkpoint_epoch_00002.pyth", "checkpoint_epoch_00003_iter_000004.pyth",
                 "checkpoint_epoch_00003_iter_000010.pyth", "checkpoint_epoch_00001.pyth", "other.pyth"):
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, name), "wb").close()
    assert [os.path.basename(p) for p in ckpt.list_checkpoints(str(tmp_path))] == [
        "checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth", "checkpoint_epoch_00003_iter_000004.pyth",
        "checkpoint_epoch_00003_iter_000010.pyth"]
    state = ckpt.rng_state()
    expected = torch.rand(3)
    path = str(tmp_path / "rng.pyth")
    ckpt.save_checkpoint(path, {"rng": state})
    ckpt.set_rng_state(torch.load(path, weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected)


def test_resume_refuses_a_checkpoint_trained_under_another_config(tmp_path):
    """A re-run whose training keys changed (a baseline's matched drop ratio, say) must not pick up the old run."""
    from iared_video.engine.trainer import _resume_payload
    from iared_video.methods import load_config

    opts = ["METHOD.NAME", "drop_random", "DROP.RATIO", "0.78", "OUTPUT_DIR", str(tmp_path)]
    old = load_config(None, opts)
    payload = {"model_state": {}, "stage": 0, "stage_name": "train", "stages": ["train"], "epoch": 0,
               "iteration": 0, "epoch_done": True, "global_epoch": 1, "cfg": old.dump()}
    ckpt.save_checkpoint(os.path.join(ckpt.checkpoint_dir(str(tmp_path)), ckpt.checkpoint_name(1)), payload)
    moved = load_config(None, [*opts, "DATA.PATH_TO_DATA_DIR", "/elsewhere", "LOG_PERIOD", "3",
                               "TRAIN.CHECKPOINT_FILE_PATH", "/elsewhere/dense.pyth"])
    assert ckpt.training_config_changes(old.dump(), moved) == []  # paths and periods may change
    assert _resume_payload(moved, ["train"], torch.device("cpu"))["global_epoch"] == 1
    changed = load_config(None, [*opts, "DROP.RATIO", "0.88", "SOLVER.BASE_LR", "0.5"])
    assert ckpt.training_config_changes(old.dump(), changed) == ["DROP.RATIO: 0.78 -> 0.88",
                                                                   "SOLVER.BASE_LR: 0.0025 -> 0.5"]
    with pytest.raises(ckpt.CheckpointError, match=r"another config \(DROP.RATIO: 0.78 -> 0.88; SOLVER"):
        _resume_payload(changed, ["train"], torch.device("cpu"))
    dump = old.dump().replace("METHOD:\n  NAME: drop_random\n", "").replace("IARED:\n", "IARED:\n  POLICY: random\n")
    assert "POLICY: random" in dump  # a checkpoint written before METHOD.NAME replaced IARED.POLICY
    assert ckpt.training_config_changes(dump, old) == ["IARED.POLICY random is now METHOD.NAME drop_random"]


def test_resume_compares_every_method_section_from_the_registry() -> None:
    from iared_video.methods import registered_methods

    sections = ckpt.training_keys()
    assert set(ckpt.TRAINING_KEYS) <= set(sections)
    assert {node for m in registered_methods() for node in m.config_nodes} == {
        "IARED", "GUMBEL", "DYNAMICVIT", "DROP", "TOME", "EVIT"} <= set(sections)
