"""Data parallelism under torchrun, on the CPU with the gloo backend on 127.0.0.1 (the processes are real
torchrun workers): two processes reach one process's weights, sharded scoring equals one process's exactly,
resume is bitwise, rank 0 alone touches the tracking store, a killed rank ends the run FAILED, every objective
runs, and (slow) two "machines" train one run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import subprocess_env

HERE = Path(__file__).resolve().parent
WORKER, STAGE = HERE / "ddp_worker.py", HERE / "ddp_stage.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TINY = ["--data.spec", "synthetic:g12ec?n=80&seed=4", "--model", "xresnet1d18", "--train.batch_size", "16",
        "--n_bootstrap", "20", "--train.explain_examples", "0"]


def _env(tmp_path: Path) -> dict:
    env = subprocess_env(f"sqlite:///{tmp_path / 'mlflow.db'}", "ddp", tmp_path)
    env.update({"ECGTL_DIST_TIMEOUT_S": "60", "OMP_NUM_THREADS": "1"})
    return env


def _torchrun(tmp_path: Path, *args: str, processes: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, "--standalone", "--nproc_per_node", str(processes), *map(str, args)],
                          env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def _alone(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], env=_env(tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def _check(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_each_rank_destroys_its_process_group_before_the_interpreter_exits(tmp_path):
    """Left to the interpreter's teardown, the gloo group's threads sometimes aborted a rank whose work had
    finished (SIGABRT): an exit handler destroys it first, on every rank."""
    script = tmp_path / "group.py"
    script.write_text(
        "import atexit, os, sys\n"
        f"sys.path.insert(0, {str(HERE.parents[1])!r})\n"
        "import torch\n"
        "from ecgtl.training import distributed\n"
        "rank = os.environ['RANK']\n"
        "atexit.register(lambda: open(f'rank{rank}.txt', 'w').write(str(torch.distributed.is_initialized())))\n"
        "print(distributed.world())\n")
    _check(_torchrun(tmp_path, script, timeout=120))
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["False", "False"]


def test_two_processes_with_synchronised_batchnorm_reach_the_weights_of_one(tmp_path):
    """Gradual unfreezing too (DDP is rebuilt when the trainable groups change). AdamW at lr 3e-4: at 3e-3 the
    weights still differ by ~7e-5, less than one process with 2 threads instead of 1 (1e-4; docs/distributed.md)."""
    _check(_alone(tmp_path, WORKER, "fit", tmp_path / "one.pt"))
    _check(_torchrun(tmp_path, WORKER, "fit", tmp_path / "two.pt"))
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert two["ranks"] == 2 and one["ranks"] == 1
    np.testing.assert_allclose(two["losses"], one["losses"], atol=1e-6)
    for key, value in one["state"].items():
        if value.is_floating_point():
            assert float((value.double() - two["state"][key].double()).abs().max()) <= 1e-5, key


def test_sharded_scoring_equals_one_process_exactly(tmp_path):
    _check(_alone(tmp_path, WORKER, "score", tmp_path / "one.npy"))
    _check(_torchrun(tmp_path, WORKER, "score", tmp_path / "two.npy"))
    one, two = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert one.shape == two.shape and np.array_equal(one, two)


def test_a_two_process_run_resumes_after_a_kill_bit_for_bit(tmp_path):
    _check(_torchrun(tmp_path, WORKER, "fit", tmp_path / "straight.pt", "--epochs", 3))
    _check(_torchrun(tmp_path, WORKER, "fit", tmp_path / "killed.pt", "--epochs", 3,
                     "--checkpoint", tmp_path / "c.pt", "--stop-after", 0))
    _check(_torchrun(tmp_path, WORKER, "fit", tmp_path / "resumed.pt", "--epochs", 3,
                     "--checkpoint", tmp_path / "c.pt", "--resume"))
    straight, resumed = torch.load(tmp_path / "straight.pt"), torch.load(tmp_path / "resumed.pt")
    assert resumed["losses"] == straight["losses"]
    for key, value in straight["state"].items():
        assert torch.equal(value, resumed["state"][key]), key


def test_the_contrastive_objective_trains_under_two_processes(tmp_path):
    _check(_torchrun(tmp_path, WORKER, "fit", tmp_path / "ssl.pt", "--objective", "contrastive", "--epochs", 1))
    assert np.isfinite(torch.load(tmp_path / "ssl.pt")["losses"]).all()


def test_rank_zero_alone_touches_the_tracking_store(tmp_path):
    """Every rank but 0 gets a store that fails on any call: the stage finishes and registers all the same."""
    import mlflow

    done = _torchrun(tmp_path, STAGE, tmp_path / "stage", "scratch", *TINY, "--train.epochs", "1")
    _check(done)
    assert done.stdout.count("run ") == 1  # rank 0 speaks for the job
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert run.info.status == "FINISHED" and "test_macro_auc" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [0]
    assert client.get_model_version_by_alias("ecgtl-scratch", "champion").run_id == run.info.run_id


def test_killing_rank_one_mid_epoch_ends_the_run_failed_and_no_rank_hangs(tmp_path):
    import mlflow

    out = tmp_path / "stage"
    process = subprocess.Popen([*TORCHRUN, "--standalone", "--nproc_per_node", "2", str(STAGE), str(out), "scratch",
                                *TINY, "--train.epochs", "40"], env=_env(tmp_path), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # until the first epoch is logged: then rank 1 is mid-training
            time.sleep(1)
            experiment = (tmp_path / "mlflow.db").exists() and client.get_experiment_by_name("ddp")
            found = experiment and client.search_runs([experiment.experiment_id])
            if found and "train_loss" in found[0].data.metrics and Path(f"{out}.rank1.pid").exists():
                break
        else:
            pytest.fail("the run never logged an epoch")
        os.kill(int(Path(f"{out}.rank1.pid").read_text()), signal.SIGKILL)
        output, _ = process.communicate(timeout=180)  # within the collective timeout (60 s), not forever
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0
    [run] = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert run.info.status == "FAILED", output[-2000:]
    assert "rank1" in run.data.tags["ecgtl.error"], run.data.tags["ecgtl.error"]


@pytest.mark.slow  # two torchrun agents rendezvous on 127.0.0.1: about a minute on 2 cores
def test_two_machines_on_one_host_train_one_run(tmp_path):
    import socket

    import mlflow

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    common = [*TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "ecgtl-test"]
    nodes = [subprocess.Popen([*common, "--node_rank", str(rank), str(STAGE), str(tmp_path / f"node{rank}"),
                               "scratch", *TINY, "--train.epochs", "1"], env=_env(tmp_path), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert run.info.status == "FINISHED"


@pytest.mark.slow  # mlflow run: a minute on 2 cores
def test_the_mlproject_entry_point_launches_torchrun(tmp_path):
    import mlflow

    project = Path(__file__).resolve().parents[2]
    done = subprocess.run(["mlflow", "run", str(project), "-e", "distributed", "--env-manager", "local",
                           "-P", "nproc=2", "-P", "stage=scratch", "-P", f"options={' '.join(TINY)} --train.epochs 1"],
                          env={**_env(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    _check(done)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"] and "test_macro_auc" in runs[0].data.metrics


@pytest.mark.parametrize("stage", ["tune", "ablation"])
def test_stages_that_spread_their_own_work_refuse_torchrun(stage, monkeypatch):
    from ecgtl.errors import EcgtlError
    from ecgtl.stages.ablation import ablation
    from ecgtl.stages.configs import AblationConfig, TuneConfig
    from ecgtl.stages.tune import tune

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it (no process group is made before the refusal)
    with pytest.raises(EcgtlError, match=f"{stage} spreads its trials or cells over workers itself"):
        tune(TuneConfig()) if stage == "tune" else ablation(AblationConfig())
