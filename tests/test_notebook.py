"""colab/recon_jax.ipynb runs end to end on the CPU at its smallest size (so it cannot rot)."""

import json
import os

import nbclient
import nbformat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "colab", "recon_jax.ipynb")


def test_notebook_runs_at_the_tiny_size(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    workdir = tmp_path / "run"
    params[0].source = "\n".join([
        'SIZE = "tiny"',
        "NUM_STEPS = 0",
        'SHAPENET_DIR = ""',
        f"SYNTHETIC_DIR = {str(tmp_path / 'data')!r}",
        f"WORKDIR = {str(workdir)!r}",
        "EVAL_VIEWS = None",
        'REPO_URL = ""',
        f"LOCAL_COPY = {REPO!r}",
    ])
    env_cell = nbformat.v4.new_code_cell("import os\nos.environ['JAX_PLATFORMS'] = 'cpu'")
    nb.cells.insert(0, env_cell)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any failure

    # What the notebook says it does, it did: a trained, evaluated run and its figures.
    assert (workdir / "checkpoints").is_dir()
    results = json.loads((workdir / "eval_test.json").read_text())
    assert results["views"] == 3 * 24 and results["step"] == 8
    assert (workdir / "eval_test_init.json").is_file()
    assert (workdir / "reconstructions.png").stat().st_size > 10_000
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    mimes = [m for o in outputs for m in o.get("data", {})]
    # contact sheet, training curves, reconstructions; then the interactive 3D view
    assert mimes.count("image/png") >= 3, mimes
    assert "application/vnd.plotly.v1+json" in mimes, mimes
