"""The local runner's own flags, parsed in-process into the PipelineConfig it runs."""

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
