"""Checkpoints: exact round trip of every leaf, version and config checks, damage detection.

Nothing here compiles a training program: states are built from the abstract
shape of ``trainer.init`` and filled with random bits (NaN payloads, -0.0,
denormals included), so a lossy dtype conversion anywhere would show.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import IMAGE, VECTOR, checkpoint_data_file, fake_run, garble

from mtdqn.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint, verify_checkpoint
from mtdqn.cli import main
from mtdqn.config import NetworkConfig, config_hash, config_to_dict
from mtdqn.errors import ConfigError


def _bits(x) -> np.ndarray:
    x = np.asarray(x)
    return x.view(np.uint8) if x.dtype != np.bool_ else x


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [VECTOR, IMAGE], ids=["vector", "image"])
def test_every_leaf_round_trips_bit_exact(tmp_path, cfg):
    trainer, abstract, state = fake_run(tmp_path, cfg)
    restored, meta = load_checkpoint(tmp_path, trainer.agent.cfg, abstract)
    assert meta["chunk"] == 1
    saved, treedef = jax.tree_util.tree_flatten_with_path(state)
    loaded, treedef2 = jax.tree_util.tree_flatten_with_path(restored)
    assert treedef == treedef2  # gymnax env-state dataclasses, replay, optimizer state: same structure
    dtypes = set()
    for (path, a), (_, b) in zip(saved, loaded):
        where = jax.tree_util.keystr(path)
        assert (a.shape, a.dtype) == (b.shape, b.dtype), where
        np.testing.assert_array_equal(_bits(a), _bits(b), err_msg=where)
        dtypes.add(str(a.dtype))
    assert {"float32", "int32", "uint32", "bool"} <= dtypes  # keys are uint32, terminals bool
    if cfg is IMAGE:
        assert "uint8" in dtypes  # MinAtar observations in replay


def test_checkpoint_carries_version_config_and_checksums(tmp_path):
    fake_run(tmp_path)
    meta = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["config"] == config_to_dict(VECTOR) and meta["config_hash"] == config_hash(VECTOR)
    files = meta["files"]
    assert files and all(len(entry) == 2 and len(entry[1]) == 64 for entry in files.values())
    assert (tmp_path / "checkpoints" / meta["path"] / next(iter(files))).is_file()


@pytest.mark.slow
def test_a_checkpoint_of_a_tasks_earlier_environment_is_not_resumed(tmp_path):
    """A run with Asterix-MinAtar made before its spawn became MinAtar's (taskfacts.ENV_REVISIONS) has the same
    config but another game: its checkpoint (the config hash its code wrote: the config's alone) is refused with
    the task named, where it would have resumed on the new game; a run of the other tasks hashes as before."""
    fake_run(tmp_path, IMAGE)
    meta_path = tmp_path / "checkpoints" / "latest.json"
    verify_checkpoint(tmp_path, IMAGE)
    meta = json.loads(meta_path.read_text())
    before = hashlib.sha256(json.dumps(config_to_dict(IMAGE), sort_keys=True).encode()).hexdigest()[:16]
    assert meta["config_hash"] != before  # Asterix's revision is in the hash
    meta_path.write_text(json.dumps({**meta, "config_hash": before}))
    with pytest.raises(ConfigError, match=r"another environment of Asterix-MinAtar \(MinAtar's spawn since "
                                          r"2026-12-07, gymnax's before.*start a new run"):
        verify_checkpoint(tmp_path, IMAGE)
    assert config_hash(VECTOR) == hashlib.sha256(json.dumps(config_to_dict(VECTOR), sort_keys=True).encode()
                                                 ).hexdigest()[:16]


def test_a_checkpoint_clipped_by_the_earlier_rule_is_not_resumed(tmp_path):
    """--max-grad-norm with networks that share nothing clips task by task since 2026-12-07: the rule is in the
    config hash of those configs alone, so a checkpoint trained under the whole tree's norm is refused (it would
    have resumed under the other rule, unsaid), and every other config hashes as before."""
    clipped = dataclasses.replace(VECTOR, network=dataclasses.replace(VECTOR.network, sharing="independent"),
                                  dqn=dataclasses.replace(VECTOR.dqn, max_grad_norm=10.0))
    plain = hashlib.sha256(json.dumps(config_to_dict(clipped), sort_keys=True).encode()).hexdigest()[:16]
    assert config_hash(clipped) != plain
    one_task = dataclasses.replace(clipped, tasks=clipped.tasks[:1])  # one task's norm is the whole tree's
    for other in (dataclasses.replace(clipped, dqn=VECTOR.dqn), dataclasses.replace(clipped, network=VECTOR.network),
                  one_task):
        assert config_hash(other) == hashlib.sha256(json.dumps(config_to_dict(other), sort_keys=True).encode()
                                                    ).hexdigest()[:16]  # not clipped, or shared: as before
    fake_run(tmp_path, clipped)
    meta_path = tmp_path / "checkpoints" / "latest.json"
    verify_checkpoint(tmp_path, clipped)
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "config_hash": plain}))
    with pytest.raises(ConfigError, match=r"made before a change of how it trains \(--max-grad-norm clips task by "
                                          r"task .*start a new run"):
        verify_checkpoint(tmp_path, clipped)
    # a tune's trial of it: named as such, not as "another search" (config.json holds the hash a search checks)
    from mtdqn.tune.search import check_reusable

    record = tmp_path / "config.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "config_hash": plain}))
    with pytest.raises(ConfigError, match=r"holds a run made before a change of how it trains: --max-grad-norm"):
        check_reusable(tmp_path, clipped)


def test_a_new_checkpoint_replaces_the_old_only_when_complete(tmp_path, caplog):
    """What a kill during a save leaves (orbax's temp dir, whose name is fixed, or a complete save before
    latest.json pointed to it) is removed before the next save, which orbax would otherwise warn about."""
    trainer, _, state = fake_run(tmp_path, chunk=1)
    ckpt = tmp_path / "checkpoints"
    for stale in ("iter_000000100.orbax-checkpoint-tmp", "iter_000000100.orbax-checkpoint-tmp-1", "iter_000000150"):
        (ckpt / stale).mkdir()
        (ckpt / stale / "junk").write_bytes(b"x")
    verify_checkpoint(tmp_path, VECTOR)  # the leftovers do not disturb the live checkpoint
    with caplog.at_level("WARNING"):
        save_checkpoint(tmp_path, trainer.agent.cfg, state, 2)
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text
    assert sorted(p.name for p in ckpt.iterdir()) == ["iter_000000100", "latest.json"]
    with pytest.raises(ValueError, match="live checkpoint"):
        save_checkpoint(tmp_path, trainer.agent.cfg, state, 2)


def _cli_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("good")
    fake_run(run)
    return run


@pytest.mark.parametrize("other, expected", [
    (replace(VECTOR, network=NetworkConfig(hidden=(64,), adapter_width=16)),
     "network.hidden: checkpoint has [64], config has [32]"),
    (replace(VECTOR, tasks=("CartPole-v1", "MountainCar-v0")),
     "tasks: checkpoint has ['CartPole-v1', 'MountainCar-v0'], config has ['CartPole-v1', 'Acrobot-v1']"),
    (replace(VECTOR, seeds=3), "seeds: checkpoint has 3, config has 2"),
], ids=["architecture", "task-set", "seeds"])
def test_foreign_checkpoint_says_what_differs(tmp_path, good_run, capsys, other, expected):
    foreign = tmp_path / "foreign"
    fake_run(foreign, other)
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    shutil.rmtree(run / "checkpoints")
    shutil.copytree(foreign / "checkpoints", run / "checkpoints")
    line = _cli_error(capsys, ["evaluate", str(run)])
    assert "different setup" in line and expected in line
    line = _cli_error(capsys, ["train", "--resume", str(run), "--progress", "False"])
    assert expected in line


def _truncate(run: Path) -> None:
    f = checkpoint_data_file(run)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete_file(run: Path) -> None:
    meta = json.loads((run / "checkpoints" / "latest.json").read_text())
    (run / "checkpoints" / meta["path"] / "_METADATA").unlink()


def _delete_dir(run: Path) -> None:
    meta = json.loads((run / "checkpoints" / "latest.json").read_text())
    shutil.rmtree(run / "checkpoints" / meta["path"])


def _edit_files(change):
    def edit(run: Path) -> None:
        path = run / "checkpoints" / "latest.json"
        meta = json.loads(path.read_text())
        meta["files"] = change(meta["files"])
        path.write_text(json.dumps(meta))
    return edit


def _edit_latest(change):
    def edit(run: Path) -> None:
        path = run / "checkpoints" / "latest.json"
        path.write_text(change(path.read_text()))
    return edit


DAMAGE = {
    "truncated-data": (_truncate, "truncated"),
    "garbled-data": (garble, "does not match its SHA-256"),
    "missing-file": (_delete_file, "_METADATA is missing"),
    "missing-checkpoint-dir": (_delete_dir, "is missing"),
    "latest-not-json": (_edit_latest(lambda t: t[: len(t) // 2]), "not valid JSON"),
    "latest-empty": (_edit_latest(lambda t: ""), "not valid JSON"),
    "option-of-the-wrong-type": (_edit_latest(lambda t: json.dumps({**json.loads(t), "options": {"devices": "x"}})),
                                 "latest.json: option devices must be int, got 'x'"),  # was a TypeError traceback
    "file-table-emptied": (_edit_files(lambda files: {}), "is corrupt \\(its file table is empty\\)"),
    "file-left-out-of-table": (_edit_files(lambda files: dict(list(files.items())[1:])),
                               "holds .*, which is not in its file table \\(mtdqn did not write it\\)"),
    "latest-not-a-record": (_edit_latest(lambda t: "[1, 2]"), "not an mtdqn checkpoint record"),
    "latest-missing-keys": (_edit_latest(lambda t: json.dumps({"format_version": FORMAT_VERSION})), "missing path"),
    "latest-path-escapes": (_edit_latest(lambda t: t.replace('"iter_', '"../iter_')), "bad path"),
    # a chunk edited by hand retrained a finished run's last chunks over its final weights; an iteration of null
    # was a TypeError's traceback
    "latest-chunk-edited": (_edit_latest(lambda t: json.dumps({**json.loads(t), "chunk": json.loads(t)["chunk"] - 1})),
                            r"latest.json is corrupt \(chunk \d+, iteration \d+ and iter_\d+ do not agree\)"),
    "latest-iteration-null": (_edit_latest(lambda t: json.dumps({**json.loads(t), "iteration": None})),
                              "is corrupt \\(bad chunk, iteration, files or config\\)"),
    "format-version": (_edit_latest(lambda t: t.replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 1')),
                       f"format version 1 in .*reads version {FORMAT_VERSION}"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_is_one_clear_line(tmp_path, good_run, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    change, expected = DAMAGE[damage]
    change(run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for argv in (["evaluate", str(run)], ["train", "--resume", str(run), "--progress", "False"]):
        line = _cli_error(capsys, argv)
        assert re.search(expected, line), line
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing written, nothing removed
    with pytest.raises(ConfigError):
        verify_checkpoint(run, VECTOR)


def test_stateful_strategies_round_trip(tmp_path):
    """Every registered strategy whose state has arrays (loss histories, learned weights) checkpoints exactly."""
    from mtdqn.strategies import REGISTRY, make_strategy

    stateful = [name for name in sorted(REGISTRY) if jax.tree.leaves(make_strategy(name, "", (1.0, 1.0)).init(2))]
    assert {"dwa", "gradnorm", "uncertainty"} <= set(stateful)  # loss histories, learned weights: never vacuous
    for name in stateful:
        cfg = replace(VECTOR, strategy=name)
        trainer, abstract, state = fake_run(tmp_path / name, cfg)
        restored, _ = load_checkpoint(tmp_path / name, trainer.agent.cfg, abstract)
        saved, loaded = jax.tree.leaves(state.strategy_state), jax.tree.leaves(restored.strategy_state)
        assert saved and len(saved) == len(loaded), name
        for a, b in zip(saved, loaded):
            np.testing.assert_array_equal(_bits(a), _bits(b), err_msg=name)


def test_an_operating_systems_dot_file_in_a_checkpoint_is_no_damage(tmp_path, good_run):
    """Every file under a checkpoint must be in its table, but .DS_Store, AppleDouble ._x or .nfs files that a
    copy or a file browser leaves are not mtdqn's and are ignored."""
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    meta = json.loads((run / "checkpoints" / "latest.json").read_text())
    (run / "checkpoints" / meta["path"] / ".DS_Store").write_bytes(b"x")
    verify_checkpoint(run, VECTOR)


def test_a_population_member_without_a_checkpoint_says_where_it_is(tmp_path):
    """evaluate/act/--resume of a tune trial stopped inside its batch said only 'no checkpoint' (the report promised
    evaluate); the member's record names its population, whose checkpoint holds it until it finishes."""
    from mtdqn.rundir import RunDir

    trial = tmp_path / "tune" / "trials" / "trial-0002"
    trial.mkdir(parents=True)
    (trial / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"no checkpoint in .*trial-0002 \(missing checkpoints/latest.json\)$"):
        RunDir(trial).require_checkpoint()
    batch = tmp_path / "tune" / "batches" / "batch-0002"
    batch.mkdir(parents=True)
    (batch / "sweep.json").write_text(json.dumps({"tune_batch": [2, 3]}))
    (trial / "config.json").write_text(json.dumps({"population": "../../batches/batch-0002"}))
    with pytest.raises(ConfigError, match=r"latest.json\): it is an unfinished member of the population in "
                                          r".*tune/batches/batch-0002, whose checkpoint holds it until it finishes; "
                                          r"rerun that tune to finish it \(a batch whose trials were all pruned "
                                          r"trains no further\)$"):
        RunDir(trial).require_checkpoint()
    with pytest.raises(ConfigError, match=r"is a member of the population in .*batch-0002, whose checkpoint is the "
                                          r"whole population's: rerun that tune"):
        RunDir(trial).require_resumable()
