"""The book's experiments (``python -m pipeline.book``): each config end to end, fast.

Each test runs one experiment on small data (digits or a few MNIST images, few epochs) with
its outputs and MLflow store under ``tmp_path``, then checks the page, the figure, the numbers
and the MLflow runs. The slow tests run chapters 3 and 5 at the book's settings on the default
data and assert the book's pattern.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.artifacts import read_json
from pipeline.book import EXPERIMENTS
from pipeline.book.cli import book_overrides, main, run_experiment
from pipeline.config import compose_config


def run_book(tmp_path: Path, *argv: str, tracking: bool = True):
    """Compose and run ``argv`` (``book=<name>`` first) with outputs under ``tmp_path``."""
    overrides = [
        *argv,
        f"paths.reports={tmp_path / 'reports'}",
        f"paths.data={tmp_path / 'data'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        *([] if tracking else ["tracking=off"]),
    ]
    cfg = compose_config(book_overrides(overrides))
    page = run_experiment(cfg, "python -m pipeline.book " + " ".join(argv))
    return cfg, page


def runs(tmp_path: Path, chapter: int) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"nndl-book-ch{chapter}")
    assert experiment is not None, f"no MLflow experiment nndl-book-ch{chapter}"
    return client.search_runs([experiment.experiment_id])


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the page's first Markdown table."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [re.split(r"(?<!\\)\|", line)[1:-1] for line in lines[2:]]


def percents(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+\.\d+)%", cell)]


def check_outputs(tmp_path: Path, name: str, n_rows: int) -> list[list[str]]:
    """The page (a table of ``n_rows`` rows, the figure linked), the PNG, the JSON, the index."""
    out = tmp_path / "reports" / "book"
    page = (out / f"{name}.md").read_text()
    rows = table_rows(page)
    assert len(rows) == n_rows
    assert f"![{name}]({name}.png)" in page
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**Reading:**" in page and "Wall time:" in page
    summary = read_json(out / f"{name}.json")
    assert summary["name"] == name and len(summary["rows"]) == n_rows
    assert f"({name}.md)" in (out / "index.md").read_text()
    return rows


def check_runs(tmp_path: Path, chapter: int, name: str, rows: set[str], count: int) -> list:
    found = runs(tmp_path, chapter)
    assert len(found) == count
    assert {r.data.tags["row"] for r in found} == rows
    for r in found:
        assert r.info.status == "FINISHED"
        assert r.data.tags["chapter"] == str(chapter)
        assert r.data.tags["book_experiment"] == name
    return found


def test_every_experiment_has_a_config():
    for name in EXPERIMENTS:
        cfg = compose_config(book_overrides([f"book={name}"]))
        assert cfg.book.name == name
        assert cfg.book.rows, name


def test_ch1(tmp_path):
    cfg, page = run_book(tmp_path, "book=ch1", "data=digits", "book.epochs=3")
    rows = check_outputs(tmp_path, "ch1", 2)
    for row in rows:
        book, val, test = percents(row[1])[0], percents(row[2])[0], percents(row[3])[0]
        assert book > 95 and 20 < val <= 100 and 20 < test <= 100  # chance is 10%
    found = check_runs(tmp_path, 1, "ch1", {"[784,30,10]", "[784,100,10]"}, 2)
    assert all(r.data.params["row.learning_rate"] == "3.0" for r in found)
    assert all(r.data.params["row.epochs"] == "3" for r in found)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(client.get_metric_history(found[0].info.run_id, "val_accuracy")) == 3
    assert "**Not full MNIST.**" in (tmp_path / "reports/book/ch1.md").read_text()


def test_ch3_slowdown_at_the_books_settings(tmp_path):
    """Fast even at the book's 300 epochs: cross-entropy learns faster from w = b = 2."""
    run_book(tmp_path, "book=ch3_slowdown")
    rows = check_outputs(tmp_path, "ch3_slowdown", 4)
    halving = {row[0].strip(): row[6].strip() for row in rows}
    assert int(halving["cross-entropy w=2 b=2"]) < 20 < int(halving["quadratic w=2 b=2"])
    start = {row[0].strip(): float(row[3]) for row in rows}
    assert start["quadratic w=0.6 b=0.9"] == pytest.approx(0.82, abs=0.005)  # sigma(1.5)
    assert start["quadratic w=2 b=2"] == pytest.approx(0.98, abs=0.005)  # sigma(4)
    found = check_runs(
        tmp_path,
        3,
        "ch3_slowdown",
        {
            "quadratic w=0.6 b=0.9",
            "quadratic w=2 b=2",
            "cross-entropy w=0.6 b=0.9",
            "cross-entropy w=2 b=2",
        },
        4,
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(client.get_metric_history(found[0].info.run_id, "cost")) == 301


def test_ch3_overfitting(tmp_path):
    run_book(tmp_path, "book=ch3_overfitting", "data=digits", "book.n_train=300", "book.epochs=4")
    rows = check_outputs(tmp_path, "ch3_overfitting", 5)
    for row in rows:
        for cell in row[2:6]:
            assert 0 < percents(cell)[0] <= 100
    found = runs(tmp_path, 3)
    assert len(found) == 5
    expanded = [r for r in found if "rotations" in r.data.tags["row"]]
    assert expanded[0].data.params["row.n_train"] == "1500"  # 300 + 4 rotated copies
    assert all(r.data.params["row.n_train"] == "300" for r in found if r not in expanded)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(client.get_metric_history(found[0].info.run_id, "train_accuracy")) == 4


def test_ch3_init(tmp_path):
    run_book(tmp_path, "book=ch3_init", "data=digits", "book.epochs=3")
    check_outputs(tmp_path, "ch3_init", 2)
    found = check_runs(tmp_path, 3, "ch3_init", {"N(0,1)", "N(0,1/n_in)"}, 2)
    # lambda 5.0 is the book's for 50,000 images: scaled to the 1,257 digits
    assert float(found[0].data.params["row.l2"]) == pytest.approx(5.0 * 1257 / 50000)


def test_ch4_universality(tmp_path):
    run_book(tmp_path, "book=ch4_universality", "book.epochs=20", "book.n_train=300")
    rows = check_outputs(tmp_path, "ch4_universality", 5)
    for row in rows:
        assert 0 < float(row[3]) < 0.5  # test RMSE; f spans [0.2, 0.9]
    found = check_runs(
        tmp_path,
        4,
        "ch4_universality",
        {f"{n} hidden neuron{'s' if n > 1 else ''}" for n in (1, 2, 5, 20, 100)},
        5,
    )
    assert all(r.data.params["row.epochs"] == "20" for r in found)
    assert "val_r2" in found[0].data.metrics
    assert (
        "generated by the experiment" in (tmp_path / "reports/book/ch4_universality.md").read_text()
    )


def test_ch5_depth_seeds_and_learning_speed(tmp_path):
    run_book(tmp_path, "book=ch5_depth", "data=digits", "book.epochs=3", "book.seeds=[0,1]")
    rows = check_outputs(tmp_path, "ch5_depth", 4)
    assert all("±" in row[2] and "±" in row[3] for row in rows)
    found = runs(tmp_path, 5)
    assert len(found) == 8  # 4 depths x 2 seeds
    assert {r.data.tags["seed"] for r in found} == {"0", "1"}
    deepest = [r for r in found if r.data.tags["row"] == "[784,30,30,30,30,10]"]
    metrics = deepest[0].data.metrics
    assert {f"delta_norm_hidden{i}" for i in range(1, 5)} <= set(metrics)
    # the vanishing gradient: the first hidden layer learns slower than the last
    assert metrics["delta_norm_hidden1"] < metrics["delta_norm_hidden4"]
    assert 0 < float(rows[-1][4]) < 1


def test_ch6_cnn_progression_and_ensemble(tmp_path):
    run_book(tmp_path, "book=ch6_cnn", "book.n_train=60", "book.epochs=1", "book.ensemble_size=2")
    rows = check_outputs(tmp_path, "ch6_cnn", 6)
    assert [percents(row[1])[0] for row in rows] == [98.78, 99.06, 99.23, 99.37, 99.60, 99.67]
    found = runs(tmp_path, 6)
    assert len(found) == 6
    ensemble = [r for r in found if r.data.tags["row"] == "ensemble of networks voting"][0]
    assert ensemble.data.params["row.ensemble_size"] == "2"
    assert ensemble.data.params["row.n_train"] == "300"  # 60 images and 4 shifted copies
    assert 0 <= ensemble.data.metrics["test_accuracy"] <= 1


def test_tracking_off_writes_no_store(tmp_path):
    run_book(tmp_path, "book=ch3_init", "data=digits", "book.epochs=1", tracking=False)
    check_outputs(tmp_path, "ch3_init", 2)
    assert not (tmp_path / "mlflow.db").exists()


def test_index_lists_every_page(tmp_path):
    run_book(tmp_path, "book=ch3_init", "data=digits", "book.epochs=1", tracking=False)
    run_book(tmp_path, "book=ch1", "data=digits", "book.epochs=1", tracking=False)
    index = (tmp_path / "reports/book/index.md").read_text()
    assert index.index("(ch1.md)") < index.index("(ch3_init.md)")  # by chapter


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["book=nope"], "unknown experiment 'nope'"),
        (["data=digits"], "name exactly one experiment"),
        (["book=ch1", "book.n_train=3", "tracking=off"], "book.n_train"),
        (["book=ch1", "nokey=1"], "nokey"),
        (["book=ch1", "+book.network.bogus=1"], "book.rows[0] ([784,30,10]): MLPClassifier"),
        (["book=ch1", "book.network.learning_rate=-1"], "'learning_rate' parameter of MLP"),
        (["book=ch4_universality", "book.network.batch_size=0"], "'batch_size' parameter of"),
        (["book=ch6_cnn", "+book.network.dropout=1.5"], "'dropout' parameter of CNNClassifier"),
        (["book=ch1", "book.epochs=0"], "book.epochs: expected an integer >= 1 or null"),
        (["book=ch1", "book.seeds=[-1]"], "book.seeds[0]: expected an integer >= 0"),
        (["book=ch1", "book.seeds=[]"], "book.seeds: expected a non-empty list"),
        (["book=ch1", "book.rows=[]"], "book.rows: expected a non-empty list"),
        (["book=ch1", "book.threads=0"], "book.threads: expected an integer >= 1"),
        (["book=ch1", "book.l2_reference_n=-5"], "book.l2_reference_n: expected"),
    ],
)
def test_bad_command_lines_are_one_line_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, f"paths.reports={tmp_path}", "tracking=off"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "book").exists()


# --- the book's settings on the default data (minutes) -----------------------------------
@pytest.mark.slow
def test_ch3_overfitting_at_the_books_settings(tmp_path):
    """400 epochs on 1,000 images: lambda 0.1 ends with a better test accuracy than lambda 0
    and a smaller gap between training and validation accuracy."""
    _, page = run_book(tmp_path, "book=ch3_overfitting", tracking=False)
    rows = {row[0].strip(): row for row in check_outputs(tmp_path, "ch3_overfitting", 5)}
    plain, l2 = rows["lambda = 0"], rows["lambda = 0.1"]
    assert percents(l2[5])[0] > percents(plain[5])[0]
    gap = {k: percents(r[3])[0] - percents(r[4])[0] for k, r in rows.items()}
    assert gap["lambda = 0.1"] < gap["lambda = 0"]
    assert "the book's pattern" in page.reading


@pytest.mark.slow
def test_ch5_depth_at_the_books_settings(tmp_path):
    """30 epochs, 3 seeds: in the deepest network each hidden layer learns slower than the
    next (||delta^1|| < ... < ||delta^4||) after every epoch, and depth 4 is no better than
    depth 2 on validation."""
    run_book(tmp_path, "book=ch5_depth", tracking=False)
    rows = check_outputs(tmp_path, "ch5_depth", 4)
    mean = {row[0].strip(): float(row[2].split("±")[0]) for row in rows}  # "91.64 ± 0.17%"
    assert mean["[784,30,30,30,30,10]"] <= mean["[784,30,30,10]"]
    assert float(rows[-1][4]) < 0.1  # the first hidden layer > 10x slower than the fourth
