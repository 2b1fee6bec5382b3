"""An evaluation leaves a run record in the same format as training's."""

import json
from importlib import metadata

from hydra import compose, initialize_config_dir

from embedforge.cli.evaluate import run
from embedforge.model.builder import encoder_from_pretrained
from embedforge.paths import CONF_DIR
from embedforge.run_record import read_run_record


def test_evaluation_writes_a_run_record(tmp_path, tiny_mistral_path, tasks_root):
    folder = encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token").save(tmp_path / "enc")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"checkpoint={folder}", f"eval.data_dir={tasks_root}", "eval.tasks=[MySTS]",
                                             f"output_dir={tmp_path}/results", f"record_dir={tmp_path}/record"])
    summary = run(cfg)
    record = read_run_record(tmp_path / "record")
    assert record["kind"] == "evaluate" and record["results"] == json.loads(summary.read_text())
    assert record["versions"]["mteb"] == metadata.version("mteb") and record["encoder"]["pooling"] == "last_token"
    assert record["config"]["checkpoint"] == str(folder) and record["git"]["sha"]
