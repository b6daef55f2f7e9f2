"""The local runner's own flags, parsed in-process into the PipelineConfig it runs."""

import json

from runners import local_runner


def _config(*argv: str):
    return local_runner.build_config(local_runner.parse_args(list(argv)))


def test_transform_statistics_flag_turns_transforms_own_statistics_back_on():
    assert _config().lean_transform
    assert not _config("--transform-statistics").lean_transform


def test_dataset_flag_takes_the_specs_names_and_paths():
    config = _config("--dataset", "penguins", "--skip-tuning")
    assert (config.pipeline_name, config.model_name) == ("penguins_pipeline", "penguins")
    assert config.data_root.endswith("data/penguins") and config.skip_tuning


def test_every_documented_runner_command_parses_into_a_config():
    """The README's "Running it" lines: each flag exists and builds a PipelineConfig."""
    import shlex

    from tests.paths import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split("### Running it", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [
        shlex.split(line, comments=True)
        for line in block.splitlines()
        if "runners/local_runner.py" in line
    ]
    assert len(commands) >= 8
    for argv in commands:
        flags = argv[argv.index("runners/local_runner.py") + 1 :]
        if flags == ["--help"]:
            continue
        config = local_runner.build_config(local_runner.parse_args(flags))
        if "--always-run" in flags:
            assert not config.skip_unchanged
        if "--no-cache" in flags:
            assert not config.enable_cache


def test_always_run_turns_the_up_to_date_check_off():
    assert _config().skip_unchanged
    assert not _config("--always-run").skip_unchanged


def _options(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_both_runners_take_the_same_pipeline_flags_from_one_table():
    """Every flag both runners take comes from pipeline/flags.py, and every flag of that table
    is in both: a pipeline setting cannot drift into one runner only."""
    import argparse

    from pipeline.flags import add_pipeline_flags
    from pipeline.kubeflow import flags as kubeflow_flags

    shared = argparse.ArgumentParser()
    add_pipeline_flags(shared)
    table = _options(shared)
    local, kubeflow = _options(local_runner_parser()), _options(kubeflow_flags.parser())
    assert table <= local and table <= kubeflow
    assert local & kubeflow == table
    assert {"--dataset", "--min-auc-gain", "--tuner-eval-steps"} <= table


def local_runner_parser():
    """The local runner's parser, captured from parse_args."""
    import argparse
    from unittest import mock

    captured = {}
    real = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        captured["parser"] = self
        return real(self, *args, **kwargs)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture):
        local_runner.parse_args([])
    return captured["parser"]


def test_a_flag_left_out_keeps_the_datasets_value_and_a_given_one_wins():
    spec_config = _config("--dataset", "penguins")
    assert spec_config.thresholds == local_runner.config_lib.dataset_config("penguins").thresholds
    config = _config(
        "--min-auc-gain", "0.05", "--tuner-eval-steps", "9", "--schema-path", "s.pbtxt"
    )
    assert config.thresholds.min_auc_gain == 0.05 and config.tuner_eval_steps == 9
    assert config.schema_path.endswith("/s.pbtxt") and config.schema_path.startswith("/")
    assert config.thresholds.min_auc == _config().thresholds.min_auc


def test_each_runner_stays_thin():
    from tests.paths import PROJECT_ROOT

    for runner in ("local_runner.py", "kubeflow_runner.py"):
        lines = (PROJECT_ROOT / "runners" / runner).read_text().splitlines()
        assert len(lines) <= 100, runner


def test_a_threshold_that_is_not_a_finite_number_is_refused_before_anything_runs(capsys):
    import pytest

    for value in ("nan", "inf", "-inf", "1e400", "abc", ""):
        with pytest.raises(SystemExit) as exit_:
            local_runner.parse_args([f"--min-auc={value}"])
        assert exit_.value.code == 2
        assert "expected a finite number" in capsys.readouterr().err


def test_model_family_flag_reaches_the_tuner_and_trainer_and_the_default_run_is_unchanged(
    capsys,
):
    import pytest

    from modules.families import GRADIENT_BOOSTED_TREES, MODEL_FAMILIES_KEY
    from pipeline.pipeline import create_pipeline

    def custom_configs(config) -> dict:
        components = {c.id: c for c in create_pipeline(config).components}
        return {
            name: json.loads(components[name].exec_properties["custom_config"])
            for name in ("Tuner", "Trainer")
        }

    config = _config("--model-family", GRADIENT_BOOSTED_TREES, "--model-family", "linear")
    assert config.model_families == (GRADIENT_BOOSTED_TREES, "linear")
    for custom in custom_configs(config).values():
        assert custom[MODEL_FAMILIES_KEY] == [GRADIENT_BOOSTED_TREES, "linear"]
    for custom in custom_configs(_config()).values():
        assert MODEL_FAMILIES_KEY not in custom  # the default run's exec properties as before
    with pytest.raises(SystemExit) as exit_:
        local_runner.parse_args(["--model-family", "xgboost"])
    assert exit_.value.code == 2
    assert "unknown model family 'xgboost'" in capsys.readouterr().err
