"""The documented way to build an image with your processors, done with a virtual environment instead.

docs/processors.md: FROM the jobnode image, `pip install` your package into its environment,
set JOBNODE_IMPORTS. Here the "image" is a fresh virtual environment that sees jobnode's
installed environment (a .pth file standing in for FROM), the package is installed into it
with pip, and `jobnode serve` from it runs the package's processor.
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest

from jobnode.client import AsyncClient, PayloadRejected
from jobnode.dev.embedded import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

PACKAGE_FILES = {
    "pyproject.toml": '''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "myapp"
        version = "1.0"
    ''',
    "myapp/__init__.py": "",
    "myapp/jobs.py": '''
        from jobnode.processors import register_processor

        @register_processor("hello", payload={
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 1}},
            "required": ["name"],
            "additionalProperties": False,
        })
        async def hello(job):
            """Greet someone by name."""
            return {"greeting": f"hello, {job.payload['name']}"}
    ''',
}


def image_environment(root: Path) -> Path:
    """A virtual environment that sees jobnode and its dependencies, as the image's /opt/jobnode has them."""
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    own_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    # addsitedir, not a plain path: the base's own .pth files (an editable jobnode) must apply too.
    lines = [f"import site; site.addsitedir({path!r})" for path in site.getsitepackages()]
    (Path(own_site) / "jobnode-base.pth").write_text("\n".join(lines) + "\n")
    return python


async def test_a_package_installed_with_pip_and_named_in_jobnode_imports_is_served(
        tmp_path, redis_server, mongo_server, key_prefix, mongo_db_name):
    package = tmp_path / "myapp-src"
    for name, text in PACKAGE_FILES.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(textwrap.dedent(text))
    python = image_environment(tmp_path / "image")
    # As in the Dockerfile: pip builds the package (fetching its build backend) and installs it.
    installed = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", str(package)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBNODE_")}
    env |= {"JOBNODE_IMPORTS": "myapp.jobs", "NODE_ID": "node-img", "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(port), "METRICS_ENABLED": "false", "REDIS_ADDR": redis_server.url,
            "MONGODB_URI": mongo_server.url, "MONGODB_DATABASE": mongo_db_name, "REDIS_KEY_PREFIX": key_prefix,
            "WORKER_COUNT": "1", "DATA_DIR": str(tmp_path / "data")}
    workdir = tmp_path / "run"  # not the package's folder: the import must come from the install
    workdir.mkdir()
    log = open(tmp_path / "node.log", "wb")
    process = subprocess.Popen([str(python), "-m", "jobnode", "serve"], cwd=workdir, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        async with AsyncClient(f"http://127.0.0.1:{port}", max_attempts=1) as client:
            async def healthy():
                try:
                    return (await client.health())["status"] == "ok"
                except Exception:
                    return False

            await wait_until(healthy, timeout_s=60, message="the node never became healthy")
            job = await client.submit("hello", {"name": "Ada"})
            done = await client.wait(job["id"], timeout_s=30)
            assert done["status"] == "completed" and done["result"] == {"greeting": "hello, Ada"}
            with pytest.raises(PayloadRejected) as refused:
                await client.submit("hello", {"nme": "Ada"})
            assert {e["field"] for e in refused.value.details["errors"]} == {"payload.nme", "payload.name"}
            [hello] = [row for row in await client.types() if row["type"] == "hello"]
            assert hello["nodes"] == ["node-img"] and hello["doc"] == "Greet someone by name."
        process.send_signal(signal.SIGTERM)
        await wait_until(lambda: process.poll() is not None, timeout_s=30, message="the node did not stop")
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
