"""edvis as a user installs it: a wheel, installed non-editable into a fresh virtual environment,
builds a site from outside the checkout (templates and static files come from the wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_wheel_installed_elsewhere_builds_a_site(rendered_run: Path, tmp_path: Path):
    # PYTHONPATH (as the test run may set it) would show pip the checkout's edvis as installed.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True, cwd=tmp_path, env=env)
    (wheel,) = wheels.glob("edvis-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, cwd=tmp_path, env=env)
    # The dependencies (numpy, Jinja2, ...) come from this interpreter's site-packages, listed
    # after the fresh environment's own; a .pth line adds a folder without running its .pth files,
    # so the checkout's editable install does not come along.
    site_packages = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                                 text=True).strip())
    (site_packages / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.check_output([str(python), "-c", "import edvis; print(edvis.__file__)"], text=True, env=env,
                                    cwd=tmp_path).strip()
    assert Path(where).is_relative_to(env_dir), where
    out = tmp_path / "site"
    proc = subprocess.run([str(python), "-m", "edvis", "site", "--run", str(rendered_run), "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for page in ("index.html", "classes.html", "galleries.html", "errors.html", "perturbations.html", "figures.html"):
        assert "</html>" in (out / page).read_text(encoding="utf-8"), page
    for static in ("edvis.css", "edvis.js"):
        assert (out / "static" / static).read_bytes() == (REPO / "templates" / "static" / static).read_bytes()
    # The Try it page's runtime comes from the wheel too, when `make install` fetched it before the build.
    runtime = REPO / "templates" / "vendor" / "node_modules" / "onnxruntime-web" / "dist"
    if runtime.is_dir():
        assert (out / "try.html").is_file()
        for name in ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"):
            assert (out / "vendor" / "onnxruntime-web" / name).read_bytes() == (runtime / name).read_bytes(), name
