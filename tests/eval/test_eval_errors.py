"""Bad inputs give clear errors that name the folder, file:line or config key."""

from __future__ import annotations

import json

import pytest

from embedforge.eval.local_files import LocalTaskError
from embedforge.eval.local_tasks import load_local_task
from embedforge.eval.runner import TaskResolutionError, resolve_tasks


def test_missing_folder(tmp_path):
    with pytest.raises(LocalTaskError, match="local task folder not found"):
        load_local_task(tmp_path / "nope")


def test_missing_task_json(tmp_path):
    (tmp_path / "t").mkdir()
    with pytest.raises(LocalTaskError, match=r"task\.json: missing"):
        load_local_task(tmp_path / "t")


def test_unknown_type(tmp_path, fx):
    fx.write_task(tmp_path / "t", "Clustering")
    with pytest.raises(LocalTaskError, match="'type' must be one of"):
        load_local_task(tmp_path / "t")


def test_unknown_task_name():
    with pytest.raises(TaskResolutionError, match="eval.tasks: unknown task 'NotATask123'"):
        resolve_tasks(["NotATask123"])


def test_unknown_mteb_task_in_task_json(tmp_path, fx):
    folder = fx.make_sts(tmp_path, mteb_task="NotATask123")
    with pytest.raises(LocalTaskError, match="mteb_task 'NotATask123' is not a known MTEB task"):
        load_local_task(folder)


def test_unknown_benchmark():
    with pytest.raises(TaskResolutionError, match="eval.benchmark"):
        resolve_tasks(benchmark="MTEB(nowhere, v0)")


def test_missing_data_dir(tmp_path):
    with pytest.raises(TaskResolutionError, match="eval.data_dir: folder not found"):
        resolve_tasks(data_dir=tmp_path / "absent")


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", r"test\.jsonl:3: malformed JSON"),
    (json.dumps({"sentence1": "a", "score": 1.0}), r"test\.jsonl:3: missing key 'sentence2'"),
    (json.dumps({"sentence1": "a", "sentence2": "b", "score": "high"}), r"test\.jsonl:3: 'score' must be int/float"),
])
def test_malformed_row_names_file_and_line(tmp_path, fx, bad_line, message):
    folder = fx.make_sts(tmp_path)
    lines = (folder / "test.jsonl").read_text().splitlines()
    lines[2] = bad_line
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(LocalTaskError, match=message):
        load_local_task(folder)


def test_pair_label_must_be_binary(tmp_path, fx):
    folder = fx.make_pairs(tmp_path)
    fx.write_jsonl(folder / "test.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 1},
                                           {"sentence1": "a", "sentence2": "c", "label": 2}])
    with pytest.raises(LocalTaskError, match=r"test\.jsonl:2: 'label' must be 0 or 1"):
        load_local_task(folder)


def test_empty_corpus(tmp_path, fx):
    folder = fx.make_retrieval(tmp_path)
    (folder / "corpus.jsonl").write_text("")
    with pytest.raises(LocalTaskError, match=r"corpus\.jsonl: no rows"):
        load_local_task(folder)


def test_qrels_bad_line(tmp_path, fx):
    folder = fx.make_retrieval(tmp_path)
    with (folder / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q9\td1\n")
    with pytest.raises(LocalTaskError, match=r"test\.tsv:6: expected 3 tab-separated fields"):
        load_local_task(folder)


def test_missing_split_file(tmp_path, fx):
    folder = fx.make_classification(tmp_path)
    (folder / "train.jsonl").unlink()
    with pytest.raises(LocalTaskError, match=r"train\.jsonl: file not found"):
        load_local_task(folder)


def test_real_task_type_mismatch(tmp_path, fx):
    folder = fx.make_sts(tmp_path, mteb_task="Banking77Classification")
    with pytest.raises(LocalTaskError, match="MTEB's Banking77Classification is 'Classification'"):
        load_local_task(folder)


def test_offline_task_without_folder_fails_before_encoding(monkeypatch):
    from embedforge.eval.instructions import InstructionPolicy
    from embedforge.eval.runner import run_tasks

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tasks = resolve_tasks(["STS22"])
    with pytest.raises(TaskResolutionError, match="no local folder and need mteb's download.*STS22"):
        run_tasks(object(), tasks, policy=InstructionPolicy())
