"""An installed wheel (not the source checkout) finds its SQL and runs."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installed_in_a_fresh_venv_finds_its_sql(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    wheel = next(dist.glob("mcp_tasks-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([py, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, text=True)
    # Its dependencies come from this test environment, after the fresh environment's own packages.
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = textwrap.dedent(f"""
        import asyncio, pathlib, mcp_tasks
        from mcp_tasks import Registry
        from mcp_tasks.stores import SqliteStore, sql_files
        here = pathlib.Path(mcp_tasks.__file__).resolve().parent
        assert here.is_relative_to(pathlib.Path({str(site)!r}).resolve()), here
        assert sql_files.storage_dir("sqlite") == here / "storage" / "sqlite", sql_files.storage_dir("sqlite")
        async def main():
            async with Registry(SqliteStore({str(tmp_path / 'w.db')!r})) as reg:
                ids = (await reg.create_tasks([{{"title": "from a wheel"}}])).ids
                assert (await reg.claim()).task.id == ids[0]
                assert await reg.verify() == []
        from mcp_tasks.board.pages import ENV
        from mcp_tasks.board.web import STATIC
        assert ENV.get_template("board.html") and (STATIC / "board.js").is_file()
        asyncio.run(main())
        print("wheel ok")
    """)
    out = subprocess.run([py, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr
    assert "wheel ok" in out.stdout
    cli = subprocess.run([bindir / "mcp-tasks", "init", "--db", str(tmp_path / "cli.db")],
                         cwd=tmp_path, capture_output=True, text=True)
    assert cli.returncode == 0 and "database ready" in cli.stdout, cli.stderr
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True).stdout
    assert "mcp_tasks/storage/sqlite/queries.sql" in names
    assert "mcp_tasks/storage/sqlite/migrations/0001_initial.sql" in names
    assert "mcp_tasks/board/templates/board.html" in names and "mcp_tasks/board/static/board.css" in names
    assert "storage/sqlite" not in names.replace("mcp_tasks/storage/sqlite", "")  # no top-level storage package
