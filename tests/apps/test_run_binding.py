"""A run directory belongs to one configuration (run_fingerprint.py), and the presets that change
training never share one with the paper runs.

Oracles: the files a run leaves (its last.ckpt's global step, its test metrics, sha256 digests of
every file of the other runs), the presets' own YAML, and the saved train_config.yaml of a real
paper run started before fingerprints existed (tests/fixtures/legacy-run: the reference
SOT-2048-42 run's, copied as it was).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers.entrypoints import REPO, run_workspace, tiny_budget, tree_digest

from sotddsp.apps import train
from sotddsp.core.class_paths import upgrade_config
from sotddsp.core.command_line import UserError, config_leaves
from sotddsp.core.run_fingerprint import (
    FILE_NAME_KEYS,
    check_run_binding,
    fingerprint_of,
    mismatch_message,
    normalized_config,
    read_fingerprint,
    write_fingerprint,
)
from sotddsp.core.run_layout import BASE_CONFIG, FINGERPRINT_FILE, configured_checkpoint_root
from sotddsp.model.cli import build_cli, config_parser

PAPER = Path("paper-experiments")  # relative: the commands run from a workspace, as a user's do
PRESETS = sorted((REPO / "paper-experiments" / "presets").glob("*.yaml"))
LEGACY_CONFIG = REPO / "tests" / "fixtures" / "legacy-run" / "train_config.yaml"
CHANGES = [  # (option, new value, the key the error line must name)
    ("--model.optimizer.init_args.lr", "0.001", "model.optimizer.init_args.lr"),
    ("--data.init_args.batch_size", "16", "data.init_args.batch_size"),
    ("--model.loss.init_args.weights.mss_lin", "0.1", "model.loss.init_args.weights.mss_lin"),
]


def _global_step(run: Path) -> int:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)["global_step"]


def _refused(args: list[str], key: str) -> str:
    """train.main(args) must stop with one line naming ``key`` and both ways out."""
    with pytest.raises(UserError) as raised:
        train.main(args)
    line = f"train.py: error: {raised.value}"
    assert "\n" not in line and len(line) <= 400, line
    assert key in line and "--checkpoint_root" in line and "--resume never" in line, line
    return line


# ---- the presets -----------------------------------------------------------------------------


def test_presets_that_change_training_write_under_their_own_root() -> None:
    """A preset with any key beyond the logger has a root of its own (a later explicit
    --checkpoint_root wins); a logger-only preset keeps the paper runs' root. sweep.py's reader
    of the YAML files (configured_checkpoint_root) agrees with train.py's parser."""
    parser = config_parser()
    experiment = REPO / "paper-experiments" / "SOT-2048.yaml"
    base_root = yaml.safe_load(BASE_CONFIG.read_text())["checkpoint_root"]
    roots: dict[str, str] = {}
    for preset in PRESETS:
        keys = [key for key, _ in config_leaves(yaml.safe_load(preset.read_text()))]
        changes_training = any(not key.startswith(("trainer.logger", "checkpoint_root"))
                               for key in keys)
        resolved = parser.parse_args(["--config", str(experiment), "--config", str(preset)])
        root = resolved.checkpoint_root
        assert root == configured_checkpoint_root([experiment, preset]), preset.name
        if changes_training:
            assert root != base_root and root not in roots.values(), (preset.name, root)
            roots[preset.name] = root
        else:
            assert root == base_root, preset.name
        explicit = parser.parse_args(["--config", str(experiment), "--config", str(preset),
                                      "--checkpoint_root", "elsewhere"])
        assert explicit.checkpoint_root == "elsewhere"
    assert {"debug.yaml", "cpu-quick.yaml", "bf16.yaml"} <= roots.keys()


def test_preset_runs_and_the_paper_run_never_share_a_directory(
    tiny_data_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short preset run, then the paper run of the same experiment and seed, then another
    preset: the paper run trains from step 0 in its own directory, and each earlier run's files
    stay byte-identical (both ways round)."""
    monkeypatch.chdir(run_workspace(tmp_path / "ws"))
    tiny = tiny_budget(tiny_data_path)
    experiment = ["--config", str(PAPER / "SOT-2048.yaml"), "--seed_everything", "3"]

    train.main([*experiment, "--config", str(PAPER / "presets" / "debug.yaml"), *tiny])
    debug = Path("checkpoints/debug/SOT-2048/SOT-2048-3")
    assert (debug / "done").exists()
    debug_files = tree_digest(debug)

    train.main([*experiment, *tiny])
    paper = Path("checkpoints/SOT-2048/SOT-2048-3")
    assert (paper / "done").exists() and _global_step(paper) == 1  # its own step, from 0
    assert json.loads((paper / "test_metrics.json").read_text())["global_step"] == 1
    assert tree_digest(debug) == debug_files
    paper_files = tree_digest(paper)

    train.main([*experiment, "--config", str(PAPER / "presets" / "cpu-quick.yaml"), *tiny])
    quick = Path("checkpoints/cpu-quick/SOT-2048/SOT-2048-3")
    assert (quick / "done").exists() and _global_step(quick) == 1
    assert tree_digest(paper) == paper_files and tree_digest(debug) == debug_files
    digests = {read_fingerprint(run).digest for run in (debug, paper, quick)}
    assert len(digests) == 3


# ---- one directory, one configuration --------------------------------------------------------


def test_a_run_directory_refuses_another_configuration(
    tiny_data_path: Path, tmp_path: Path
) -> None:
    """Done or interrupted, a run refuses a command with another lr, batch size or loss weight
    (one line naming the key) and nothing in it changes; --resume never, the fix it names,
    restarts it from step 0 under the new configuration."""
    tiny = tiny_budget(tiny_data_path)
    command = ["--config", str(REPO / "paper-experiments" / "SOT-2048.yaml"), "--seed_everything",
               "3", "--checkpoint_root", str(tmp_path / "runs"), *tiny]
    train.main(command)
    run = tmp_path / "runs" / "SOT-2048" / "SOT-2048-3"
    files = tree_digest(run)
    _refused([*command, *CHANGES[0][:2]], CHANGES[0][2])  # already done
    assert tree_digest(run) == files

    (run / "done").unlink()  # as if interrupted: the next command resumes from last.ckpt
    (run / "test_metrics.json").unlink()
    files = tree_digest(run)
    for option, value, key in CHANGES:
        _refused([*command, option, value], key)
        assert tree_digest(run) == files, key
    # a preset forced into the paper run's directory is refused too
    debug = ["--config", str(REPO / "paper-experiments" / "presets" / "debug.yaml")]
    _refused([*command[:2], *debug, *command[2:]], "data.init_args.batch_size")
    assert tree_digest(run) == files

    restarted = train.main([*command, *CHANGES[0][:2], "--resume", "never"])
    assert _global_step(run) == 1 and (run / "done").exists()
    assert read_fingerprint(run).config["model"]["optimizer"]["init_args"]["lr"] == 0.001
    # the directory now belongs to the new configuration: its command finds the run done
    again = train.main([*command, *CHANGES[0][:2]])
    assert again == json.loads((run / "test_metrics.json").read_text())
    assert {key: again[key] for key in restarted} == restarted


def test_a_run_without_fingerprint_is_bound_by_its_train_config(
    tiny_data_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs started before fingerprints existed (the reference runs) have only train_config.yaml:
    their own command resumes them, a changed lr is refused before anything is written."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "reference-runs" / "SOT-2048" / "SOT-2048-42"
    run.mkdir(parents=True)
    shutil.copy(LEGACY_CONFIG, run / "train_config.yaml")
    recorded = yaml.safe_load(LEGACY_CONFIG.read_text())
    recorded_data = Path(recorded["data"]["init_args"]["data_path"])
    recorded_data.parent.mkdir(parents=True)
    shutil.copy(tiny_data_path, recorded_data)  # the file the run's config names, made tiny
    command = ["--config", str(REPO / "paper-experiments" / "SOT-2048.yaml"),
               "--checkpoint_root", "reference-runs"]  # the reference runs' own command

    cli = build_cli(command)
    assert check_run_binding(cli.run_dir, fingerprint_of(cli.config_yaml),
                             cli.resolve_config_text) is True  # matches; the file is written next
    files = tree_digest(tmp_path)
    _refused([*command, "--model.optimizer.init_args.lr", "3e-4"], "model.optimizer.init_args.lr")
    assert tree_digest(tmp_path) == files  # refused on resume, after the data checks

    (run / "done").write_text("")
    (run / "test_metrics.json").write_text('{"lsd": 1.5}\n')
    assert train.main(command) == {"lsd": 1.5}
    _refused([*command, "--data.init_args.batch_size", "16"], "data.init_args.batch_size")
    assert not (run / FINGERPRINT_FILE).exists()  # a done run is only read


# ---- the fingerprint itself (no training) ---------------------------------------------------


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The legacy run's resolved config, as nested dicts."""
    return yaml.safe_load(LEGACY_CONFIG.read_text())


def _set(config: dict, dotted: str, value: object) -> dict:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[leaf] = value
    return config


def test_what_may_change_on_resume_leaves_the_digest_alone(resolved: dict) -> None:
    import copy

    digest = fingerprint_of(yaml.safe_dump(resolved)).digest
    same = copy.deepcopy(resolved)
    for dotted, value in (("checkpoint_root", "/elsewhere"), ("resume", "never"),
                          ("trainer.logger", False), ("trainer.enable_progress_bar", False),
                          ("trainer.accelerator", "cuda"), ("trainer.devices", 4),
                          ("data.init_args.num_workers", 8), ("model.n_plot_examples", 0),
                          ("data.init_args.data_path",
                           "/scratch/data/40_1950_4096_04_1_4000_8_1_harmonic.pth")):
        _set(same, dotted, value)
    assert fingerprint_of(yaml.safe_dump(same)).digest == digest
    for dotted, value in (("data.init_args.data_path", "data/other.pth"),
                          ("model.optimizer.init_args.lr", 0.001), ("trainer.max_steps", 640),
                          ("seed_everything", 1), ("model.encoder_dtype", "bfloat16")):
        assert fingerprint_of(yaml.safe_dump(_set(copy.deepcopy(resolved), dotted, value))).digest \
            != digest, dotted
    assert FILE_NAME_KEYS == ("data.init_args.data_path",)


def test_moved_classes_match_through_the_alias_table(resolved: dict, tmp_path: Path) -> None:
    """The package move's alias table (core/class_paths.py) is what normalize_class_path applies:
    the legacy run, recorded under the flat layout's class paths (and the older
    ``synthetic_data.PreloadedSinusoidDataModule``), matches a command that names the package's
    classes; a class that did not move still tells two configurations apart."""
    import copy

    old = copy.deepcopy(resolved)
    old["data"]["class_path"] = "synthetic_data.PreloadedSinusoidDataModule"
    assert old["model"]["encoder"]["class_path"] == "models.encoder.PESTOEncoder"
    new = upgrade_config(resolved)
    assert new["model"]["encoder"]["class_path"] == "sotddsp.model.encoder.PESTOEncoder"
    assert new["data"]["class_path"] == "sotddsp.data.datamodule.PreloadedSinusoidDataModule"
    assert normalized_config(old) == normalized_config(new)
    write_fingerprint(tmp_path, fingerprint_of(yaml.safe_dump(old)))
    current = fingerprint_of(yaml.safe_dump(new))
    assert read_fingerprint(tmp_path).digest == current.digest
    assert check_run_binding(tmp_path, current, lambda text: pytest.fail("not needed")) is False
    other = copy.deepcopy(new)
    other["model"]["features"]["class_path"] = "sotddsp.dsp.spectral.STFT"
    assert normalized_config(other) != normalized_config(new)


def test_options_added_since_the_run_started_do_not_refuse_it(resolved: dict,
                                                              tmp_path: Path) -> None:
    """The recorded config is resolved again by the current parser, where a new option takes its
    default: same configuration, so accepted, and the fingerprint is rewritten."""
    import copy

    write_fingerprint(tmp_path, fingerprint_of(yaml.safe_dump(resolved)))
    newer = copy.deepcopy(resolved)
    newer["model"]["new_option"] = "paper"
    resolve = lambda text: _set(yaml.safe_load(text), "model.new_option", "paper")
    assert check_run_binding(tmp_path, fingerprint_of(yaml.safe_dump(newer)), resolve) is True
    other = _set(copy.deepcopy(newer), "model.new_option", "beyond")
    with pytest.raises(UserError, match=r"model\.new_option was \"paper\", now \"beyond\""):
        check_run_binding(tmp_path, fingerprint_of(yaml.safe_dump(other)), resolve)


def test_the_error_line_names_a_few_keys_and_counts_the_rest(resolved: dict) -> None:
    differences = [(f"model.key_{i}", i, i + 1) for i in range(9)]
    long_dir = Path("/a/rather/long/path/to/the/checkpoints/of/someone") / "SOT-2048" / "SOT-2048-3"
    line = "train.py: error: " + mismatch_message(long_dir, differences)
    assert "model.key_0 was 0, now 1; model.key_1 was 1, now 2; model.key_2 was 2, now 3; " \
           "+6 more" in line
    assert len(line) <= 400 and "\n" not in line


def test_unreadable_records(tmp_path: Path, resolved: dict) -> None:
    current = fingerprint_of(yaml.safe_dump(resolved))
    assert check_run_binding(tmp_path, current, dict) is True  # nothing recorded: bound to nothing
    (tmp_path / FINGERPRINT_FILE).write_text("{not json")
    with pytest.raises(UserError, match=r"config_fingerprint\.json is unreadable.*--resume never"):
        check_run_binding(tmp_path, current, dict)
    (tmp_path / "train_config.yaml").write_text("model: {no_such_option: 1}\n")

    def rejecting(text: str) -> dict:
        raise ValueError("model: no_such_option is not an option")

    with pytest.raises(UserError, match=r"train_config\.yaml: this code cannot read the run's "
                                        r"configuration \(model: no_such_option"):
        check_run_binding(tmp_path, current, rejecting)
