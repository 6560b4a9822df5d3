"""Report layouts: the LaTeX parses into the paper's rows and columns, and the side-by-side published values
equal the CSVs in ../shared/paper (copied into bench/reference)."""

import csv
import re
from pathlib import Path

import pandas as pd
from crafted_records import write_record

from bench.cli.report import main
from bench.reporting.tables import build_report

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "paper"
REFERENCE = ROOT / "bench" / "reference"


def _paper_csv(name: str) -> Path:
    """The shared copy when present (the source of truth), else the project's copy."""
    return SHARED / name if (SHARED / name).is_file() else REFERENCE / name


def _write(root: Path, cell: dict, accuracies: dict, **extra) -> None:
    """A crafted record of a real, planned cell (``suffix`` is not a cell field: evaluation ids are derived)."""
    if str(cell.get("suffix", "")).startswith("@"):  # a separate evaluation cell of one evaluation network
        cell = {**cell, "task": "evaluate", "source": "distilled"}
    cell = {k: v for k, v in cell.items() if k != "suffix"}
    write_record(root, cell, accuracies, **extra)


def parse_tabular(tex: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body rows of the single tabular environment in a LaTeX table."""
    body = re.search(r"\\begin\{tabular\}\{[^}]*\}(.*)\\end\{tabular\}", tex, re.S)
    assert body, "no tabular environment"
    lines = [line.strip() for line in body.group(1).split("\\\\")]
    rows = [
        [
            c.strip()
            for c in line.replace("\\toprule", "").replace("\\midrule", "").replace("\\bottomrule", "").split("&")
        ]
        for line in lines
        if "&" in line
    ]
    return rows[0], rows[1:]


def _unescape(text: str) -> str:
    return text.replace("\\_", "_").replace("\\%", "%").replace("\\textbackslash ", "\\").replace("$\\pm$", "±")


def test_table1_latex_has_the_papers_rows_columns_and_values(tmp_path):
    root = tmp_path / "table1" / "paper"
    with open(_paper_csv("table1_main.csv")) as fh:
        paper = list(csv.DictReader(fh))
    methods = ["Random", "Herding", "K-Center", "Forgetting", "DC", "DSA", "DM", "IDC", "DREAM", "DREAM+"]
    names = {
        "MNIST": "mnist",
        "FashionMNIST": "fashionmnist",
        "SVHN": "svhn",
        "CIFAR10": "cifar10",
        "CIFAR100": "cifar100",
    }
    columns = [c for c in paper[0] if c != "method"]
    for method in reversed(methods):  # written out of order: the layout must sort them
        for column in columns:
            dataset, ipc = column.split("/")
            _write(root, {"dataset": names[dataset], "ipc": int(ipc), "method": method}, {"ConvNet-3": [50.0, 52.0]})
    report = build_report(root)
    header, rows = parse_tabular(report.latex)
    assert [r[0] for r in rows] == methods
    assert [_unescape(h) for h in header[1:]] == [
        f"{names[c.split('/')[0]]}/{c.split('/')[1]}"
        for c in sorted(columns, key=lambda c: (names[c.split("/")[0]], int(c.split("/")[1])))
    ]
    by_method = {r["method"]: r for r in paper}
    for row in rows:
        for head, value in zip(header[1:], row[1:]):
            dataset, ipc = _unescape(head).split("/")
            column = f"{[k for k, v in names.items() if v == dataset][0]}/{ipc}"
            published = by_method[row[0]][column]
            assert _unescape(value).startswith("51.0 ± 1.0")
            if published:
                assert f"({float(published):.1f}, {51.0 - float(published):+.1f})" in value
            else:
                assert "(" not in value
    assert (root / "table.tex").read_text() == report.latex


def test_table3_iterations_to_reach_base_from_curves(tmp_path):
    root = tmp_path / "table3" / "paper"
    curves = {
        "IDC": [(0, 40.0), (10, 55.0), (20, 60.0)],
        "IDC+rm+init": [(0, 45.0), (10, 61.0), (20, 64.0)],
        "IDC+rm+init+bm+wu": [(0, 50.0), (10, 58.0), (20, 62.0)],
    }
    for method, curve in curves.items():
        _write(
            root,
            {"dataset": "cifar10", "ipc": 10, "method": method},
            {"ConvNet-3": [curve[-1][1]]},
            log=[{"iteration": i, "accuracy": a} for i, a in curve],
            seconds_per_inner_loop=0.2,
            clustering_share=0.25,
        )
    table = build_report(root).table
    assert table.loc["IDC", "iterations to reach base"] == "20"
    assert table.loc["IDC+rm+init", "iterations to reach base"] == "10"
    assert table.loc["IDC+rm+init+bm+wu", "iterations to reach base"] == "20"
    assert table.loc["IDC+rm+init+bm+wu", "paper iterations"] == "60"
    with open(_paper_csv("table3_components.csv")) as fh:
        full = [r for r in csv.DictReader(fh) if (r["base"], r["RM"], r["Init"], r["BM"]) == ("IDC", "1", "1", "1")][0]
    assert f"({float(full['top1'].split('±')[0]):.1f}," in table.loc["IDC+rm+init+bm+wu", "top-1"]
    assert table.loc["IDC+rm+init", "s / inner loop (clustering %)"] == "0.200 (25%)"
    assert (root / "curves.png").is_file()


def test_table5_subcluster_grid_matches_paper(tmp_path):
    root = tmp_path / "table5" / "paper"
    for method in ("DREAM", "DREAM+"):
        for n, s in ((32, 1), (64, 2), (128, 1)):
            _write(
                root,
                {
                    "dataset": "cifar10",
                    "ipc": 10,
                    "method": method,
                    "variant": f"k{n}s{s}",
                    "suffix": f"_k{n}s{s}",
                    "settings": {"batch_real": n * s, "samples_per_cluster": s},
                },
                {"ConvNet-3": [60.0]},
            )
    table = build_report(root).table
    paper = pd.read_csv(_paper_csv("table5_subclusters.csv"))
    for method in ("DREAM", "DREAM+"):
        for n, s in ((32, 1), (64, 2), (128, 1)):
            published = paper[(paper.method == method) & (paper.samples_per_subcluster == s)][f"subclusters_{n}"].iloc[
                0
            ]
            mark = " *" if method == "DREAM" and s > 1 else ""  # no official DREAM script samples sub-clusters
            cell = table.loc[f"{method}, {s} per sub-cluster{mark}", f"{n} sub-clusters"]
            assert f"({float(published.split('±')[0]):.1f}," in cell
    assert "DREAM+'s official script" in table.attrs["note"]


def test_cross_arch_and_timing_layouts(tmp_path):
    root = tmp_path / "table4" / "paper"
    for arch in ("ConvNet-3", "ResNetAP-10"):
        for eval_arch in ("ConvNet-3", "ResNet-10", "DenseNet-121"):
            _write(
                root,
                {"dataset": "cifar10", "ipc": 10, "method": "DREAM+", "arch": arch, "suffix": f"@{eval_arch}"},
                {eval_arch: [55.0]},
            )
    table = build_report(root).table
    assert table.shape == (2, 3)
    assert "(66.0, -11.0)" in table.loc["DREAM+ (distilled on ConvNet-3)", "eval DenseNet-121"]
    assert "(53.8, +1.2)" in table.loc["DREAM+ (distilled on ResNetAP-10)", "eval ConvNet-3"]

    root6 = tmp_path / "table6" / "paper"
    _write(
        root6,
        {"dataset": "cifar10", "ipc": 10, "method": "DREAM+"},
        {"ConvNet-3": [1.0]},
        seconds_per_inner_loop=0.4,
        clustering_share=0.25,
    )
    row = build_report(root6).table.loc["cifar10 DREAM+"]
    assert row["clustering s"] == "0.100 (paper 0.1)" and row["inner loop s"] == "0.400 (paper 0.3)"


def test_continual_layout_and_plot(tmp_path):
    root = tmp_path / "continual" / "mini"
    for seed, steps in ((0, [90.0, 80.0, 70.0]), (1, [92.0, 82.0, 72.0])):
        _write(
            root,
            {"dataset": "digits", "ipc": 2, "method": "DM", "seed": seed},
            {"ResNet-10": [steps[-1]]},
            step_accuracies=steps,
        )
    report = build_report(root)
    assert list(report.table.columns) == ["step 1", "step 2", "step 3"]
    assert report.table.loc["DM", "step 2"] == "81.0 ± 1.0"
    assert (root / "continual.png").is_file()


def test_report_all_rebuilds_every_folder_and_rejects_missing(tmp_path, capsys):
    for name in ("a", "b"):
        _write(tmp_path / name / "mini", {"dataset": "digits", "ipc": 1, "method": "DC"}, {"ConvNet-3": [80.0]})
    assert main(["--all", str(tmp_path)]) == 0
    assert (tmp_path / "a" / "mini" / "table.md").is_file() and (tmp_path / "b" / "mini" / "table.md").is_file()
    assert main([str(tmp_path / "nowhere")]) == 2


def test_fidelity_layout_judges_each_cell(tmp_path):
    """Mean over sets ± standard error against the paper, judged by docs/verdicts.md: one set is only indicative."""
    root = tmp_path / "fidelity" / "cpu"
    for seed, acc in enumerate([60.0, 62.0, 64.0, 66.0]):  # mean 63.0, paper Random MNIST/1 = 64.9
        _write(root, {"dataset": "mnist", "ipc": 1, "method": "Random", "seed": seed}, {"ConvNet-3": [acc]})
    _write(root, {"dataset": "mnist", "ipc": 1, "method": "Herding", "seed": 0}, {"ConvNet-3": [80.0]})
    table = build_report(root).table
    assert table.loc["Random", "mnist/1"].startswith("63.0 ± 1.3 (n=4) [64.9]")
    assert table.loc["Random", "mnist/1 fit"] == "reproduced -1.9 (n=4, tol 3.7)"
    assert table.loc["Herding", "mnist/1"] == "80.0 (n=1) [89.2]"
    assert table.loc["Herding", "mnist/1 fit"] == "indicative -9.2 (n=1; needs >= 3 sets)"
    assert list(table.columns) == ["mnist/1", "mnist/1 fit"]


def test_fidelity_counts_distinct_sets_and_names_changed_settings(tmp_path):
    """Three seeds holding one set (a shared feature network's Herding pick) are one set, not three: n=1, no
    standard error; a row run with a changed budget says so beside its verdict; a variant row is not judged."""
    root = tmp_path / "fidelity" / "cpu"
    for seed, acc in enumerate([86.0, 86.4, 86.8]):
        _write(
            root,
            {"dataset": "mnist", "ipc": 1, "method": "Herding", "seed": seed, "settings": {"feature_epochs": 2}},
            {"ConvNet-3": [acc]},
            provenance={"set_sha256": "same-images"},
        )
    _write(
        root,
        {"dataset": "mnist", "ipc": 1, "method": "DC", "settings": {"iterations": 20, "eval_epochs": 300}},
        {"ConvNet-3": [79.6]},
        protocol={"name": "A-dcaug", "epochs": 300, "epochs_from": "matrix"},
        protocol_choice="published",
    )
    _write(
        root,
        {"dataset": "mnist", "ipc": 1, "method": "DC", "variant": "noaug", "suffix": "_noaug"},
        {"ConvNet-3": [91.0]},
    )
    report = build_report(root)
    table = report.table
    assert table.loc["Herding", "mnist/1"] == "86.4 (n=1) [89.2]"
    assert table.loc["Herding", "mnist/1 fit"] == "indicative -2.8 (n=1; needs >= 3 sets)"  # no published recipe
    assert table.loc["DC", "mnist/1 fit"] == "changed: Δ -12.1 under eval_epochs=300, iterations=20 (n=1)"
    assert table.loc["DC [noaug]", "mnist/1"] == "91.0 (n=1)"
    assert table.loc["DC [noaug]", "mnist/1 fit"] == "no paper value (n=1)"
    assert "A-dcaug @ 300 epochs" in report.caption and "published protocol, other epochs" in report.caption
    assert "not the published evaluation" in report.caption


def test_caption_names_the_feature_network_the_coresets_picked_with(tmp_path):
    """feature_epochs does not count as a changed setting (the published recipe is unknown), so the caption says
    which feature network each selecting row used; rows that pick without one (Random, DC) are not named."""
    root = tmp_path / "fidelity" / "sets"
    _write(
        root,
        {"dataset": "mnist", "ipc": 1, "method": "Herding", "settings": {"feature_epochs": 2}},
        {"ConvNet-3": [88.0]},
    )
    _write(
        root,
        {"dataset": "mnist", "ipc": 1, "method": "Forgetting", "settings": {"feature_epochs": 2, "feature_seed": 0}},
        {"ConvNet-3": [35.0]},
    )
    _write(root, {"dataset": "mnist", "ipc": 1, "method": "K-Center"}, {"ConvNet-3": [88.0]})
    _write(root, {"dataset": "mnist", "ipc": 1, "method": "Random"}, {"ConvNet-3": [64.0]})
    line = next(l for l in build_report(root).caption.splitlines() if l.startswith("Feature networks"))
    assert "Herding: 2 epochs, the cell's seed" in line and "Forgetting: 2 epochs, seed 0" in line
    assert "K-Center: 30 epochs, the cell's seed" in line and "Random" not in line
    plain = tmp_path / "fidelity" / "random"
    _write(plain, {"dataset": "mnist", "ipc": 1, "method": "Random"}, {"ConvNet-3": [64.0]})
    assert "Feature networks" not in build_report(plain).caption


def test_one_run_shows_no_spread_and_ablation_tables_compare_ipc_10_only(tmp_path):
    root = tmp_path / "table4" / "paper"
    for ipc in (1, 10):
        _write(
            root, {"dataset": "cifar10", "ipc": ipc, "method": "DREAM+", "suffix": "@ConvNet-3"}, {"ConvNet-3": [55.0]}
        )
    table = build_report(root).table
    assert table.loc["DREAM+ (distilled on ConvNet-3), IPC 10", "eval ConvNet-3"].startswith("55.0 (1 run) (")
    assert table.loc["DREAM+ (distilled on ConvNet-3), IPC 1", "eval ConvNet-3"] == "55.0 (1 run)"


def test_cells_dropped_from_the_matrix_are_not_reported(tmp_path, capsys):
    """The plan is the matrix as it is now: a finished cell the matrix no longer has is left out, with a warning."""
    from bench.experiment.store import write_plan

    root = tmp_path / "fidelity" / "cpu"
    for seed in (0, 1):
        _write(
            root,
            {"dataset": "mnist", "ipc": 1, "method": "Random", "seed": seed},
            {"ConvNet-3": [60.0 + 10 * seed]},
            fingerprint="test",
        )
    write_plan(root, {"mnist_ipc1_Random_ConvNet-3_s0": "test", "mnist_ipc1_Random_ConvNet-3_s1": "test"})
    write_plan(root, {"mnist_ipc1_Random_ConvNet-3_s0": "test"})  # the matrix now excludes seed 1
    table = build_report(root).table
    assert table.loc["Random", "mnist/1"] == "60.0 (n=1) [64.9]"
    assert "1 folder(s) with a result that the matrix's current plan does not list" in (err := capsys.readouterr().err)
    assert "(mnist_ipc1_Random_ConvNet-3_s1)" in err


def test_timings_from_different_machines_are_never_averaged(tmp_path):
    root = tmp_path / "table6" / "paper"
    for seed, (machine, seconds) in enumerate((("NVIDIA H200", 0.1), ("CPU x2 (x86_64)", 3.0))):
        _write(
            root,
            {"dataset": "cifar10", "ipc": 10, "method": "DREAM+", "seed": seed},
            {"ConvNet-3": [1.0]},
            seconds_per_inner_loop=seconds,
            clustering_share=0.5,
            machine=machine,
        )
    table = build_report(root).table
    assert table.loc["cifar10 DREAM+ on NVIDIA H200", "inner loop s"].startswith("0.100")
    assert table.loc["cifar10 DREAM+ on CPU x2 (x86_64)", "inner loop s"].startswith("3.000")


def test_a_protocol_rule_of_its_own_code_is_not_called_shortened():
    """IDC's own rule trains DenseNet 400 epochs at IPC >= 50: the record says the protocol set those epochs."""
    from bench.experiment.record import upgrade_record
    from bench.reporting.tables import protocol_label

    assert protocol_label({"name": "B", "epochs": 400, "epochs_from": "protocol"}) == "B"
    assert protocol_label({"name": "B", "epochs": 300, "epochs_from": "matrix"}) == "B @ 300 epochs"
    old = upgrade_record({"cell": {}, "protocol": {"name": "A-dcaug", "epochs": 300}})  # a schema-1 record
    assert protocol_label(old["protocol"]) == "A-dcaug @ 300 epochs"


def test_the_fidelity_table_judges_only_last_epoch_accuracies(tmp_path):
    """Best-of-validation accuracies (optimistic by construction) are shown but never given a verdict; the last
    epoch's are judged exactly as results.csv judges them."""
    root = tmp_path / "fidelity" / "sets"
    for seed, (last, best) in enumerate([(84.0, 99.0), (85.0, 99.0), (86.0, 99.0)]):
        cell = {"dataset": "mnist", "ipc": 10, "method": "K-Center", "seed": seed}
        _write(root, cell, {"ConvNet-3": [last]}, best_accuracies={"ConvNet-3": [best]})
    last = build_report(root, write=False).table
    assert last.loc["K-Center", "mnist/10"].startswith("85.0 ± 0.6 (n=3) [84.4]")
    assert last.loc["K-Center", "mnist/10 fit"].startswith("reproduced")
    results = pd.read_csv(root / "results.csv") if (root / "results.csv").exists() else None
    assert results is None  # write=False wrote nothing
    best = build_report(root, write=False, accuracy="best").table
    assert best.loc["K-Center", "mnist/10"].startswith("99.0 ± 0.0 (n=3)")
    assert best.loc["K-Center", "mnist/10 fit"].startswith("not judged")
