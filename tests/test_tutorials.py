"""Execute every tutorial notebook top to bottom (FAST mode) and fail on any cell error.

Each notebook runs in its own kernel, in a temporary copy of the folder (nothing is
written into the repository), with ``MINIDL_TUTORIAL_FAST=1`` (small subsets, few
epochs), ``MINIDL_DATA`` pointing at an empty folder (so the notebooks use their
synthetic stand-in data and never download), this checkout first on the kernel's
``PYTHONPATH``, and one BLAS/minidl thread per kernel: on a shared, busy machine a
multi-threaded BLAS spends its time waiting for its own threads (small matrix products
ran 20 times slower with two threads than with one on the 2-core CI machine).
"""
import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))

nbformat = pytest.importorskip("nbformat", reason="needs nbformat (pip install -e '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="needs nbclient (pip install -e '.[test]')")
pytest.importorskip("ipykernel", reason="needs ipykernel (pip install -e '.[test]')")

pytestmark = pytest.mark.slow
CELL_TIMEOUT_S = 300


def test_all_nine_tutorials_are_present():
    names = [path.stem for path in NOTEBOOKS]
    assert [name[:2] for name in names] == [f"{i:02d}" for i in range(1, 10)], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{path.name}: store notebooks without outputs (rebuild them with " \
                "python tutorials/build_notebooks.py)"


def test_notebooks_match_their_generator(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TUTORIALS))
    import build_notebooks
    assert sorted(build_notebooks.NOTEBOOKS) == [path.stem for path in NOTEBOOKS]
    for name, cells in build_notebooks.NOTEBOOKS.items():
        fresh = build_notebooks.build(name, cells, folder=tmp_path)
        assert fresh.read_text() == (TUTORIALS / f"{name}.ipynb").read_text(), \
            f"{name}.ipynb differs from tutorials/build_notebooks.py: run that script"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, tmp_path, monkeypatch):
    work = tmp_path / "tutorials"
    shutil.copytree(TUTORIALS, work)
    (tmp_path / "empty_data").mkdir()
    monkeypatch.setenv("MINIDL_TUTORIAL_FAST", "1")
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "empty_data"))
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "MINIDL_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    notebook = nbformat.read(work / path.name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    text = "\n".join(output.get("text", "") for cell in notebook.cells
                     if cell.cell_type == "code" for output in cell.outputs)
    assert "FAST mode" in text
    assert str(ROOT / "minidl") in text, "the kernel imported minidl from elsewhere"
