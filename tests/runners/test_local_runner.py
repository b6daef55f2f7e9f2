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
