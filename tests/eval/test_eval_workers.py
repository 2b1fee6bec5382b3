"""embedforge-evaluate spreads tasks over worker processes (one per GPU with eval.workers=auto; here
two CPU processes) and gets exactly the single-process scores."""

import json

import pytest
from hydra import compose, initialize_config_dir

from embedforge.cli.evaluate import run
from embedforge.eval.parallel import resolve_workers, split_round_robin
from embedforge.model.builder import encoder_from_pretrained
from embedforge.paths import CONF_DIR


def test_two_workers_give_the_single_process_scores(tmp_path, tiny_mistral_path, tasks_root):
    folder = encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token").save(tmp_path / "enc")
    base = [f"checkpoint={folder}", f"eval.data_dir={tasks_root}", "eval.tasks=[MySTS,MyPairs,MyClassification]",
            "device=cpu"]
    summaries = []
    for workers in (1, 2):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("evaluate", overrides=base + [f"eval.workers={workers}", f"output_dir={tmp_path}/r{workers}",
                                                        f"record_dir={tmp_path}/rec{workers}"])
        summaries.append(json.loads(run(cfg).read_text()))
    assert set(summaries[0]) == {"MySTS", "MyPairs", "MyClassification"}
    assert summaries[0] == pytest.approx(summaries[1], abs=1e-6)
    record = json.loads((tmp_path / "rec2" / "run_record.json").read_text())
    assert record["results"] == summaries[1] and record["encoder"]["pooling"] == "last_token"


def test_worker_settings():
    assert split_round_robin(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert split_round_robin(["a"], 4) == [["a"]]
    assert resolve_workers(1, "auto") == 1 and resolve_workers(3, "cpu") == 3
    assert resolve_workers("auto", "cpu") == 1
    from embedforge.eval.settings import EvaluateJob

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=["eval.workers=0"])
    with pytest.raises(ValueError, match="eval.workers"):  # checked when the config is bound
        EvaluateJob.from_config(cfg)
