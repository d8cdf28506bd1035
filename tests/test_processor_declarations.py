"""What a processor declares besides its code: its queue and payload schema, and the modules a node imports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobnode.core.schemas import PayloadCheck
from jobnode.core.settings import Settings
from jobnode.processors import registry as registry_module
from jobnode.processors.catalog import build_registry
from jobnode.processors.imports import ImportFailed, import_modules
from jobnode.processors.registry import ProcessorRegistry

REPO = Path(__file__).resolve().parent.parent


class ResizeIn:
    """A stand-in for a pydantic v2 model: all the registry asks of one is model_json_schema()."""

    @classmethod
    def model_json_schema(cls):
        return {"type": "object", "properties": {"width": {"type": "integer"}}, "required": ["width"]}


async def noop(job):
    """Do nothing, successfully."""
    return None


def test_a_processor_declares_its_queue_schema_and_description():
    registry = ProcessorRegistry()
    registry.register("resize", noop, queue="media", payload=ResizeIn)
    spec = registry.spec("resize")
    assert (spec.queue, spec.schema, spec.doc) == ("media", ResizeIn.model_json_schema(), "Do nothing, successfully.")
    assert registry.queues() == {"media"}
    registry.register("plain", noop)
    assert (registry.spec("plain").queue, registry.spec("plain").schema) == ("default", None)


@pytest.mark.parametrize("options, problem", [
    ({"queue": "Media"}, "queue 'Media' must be 1-64 lowercase"),
    ({"payload": {"type": "nonsense"}}, "not a valid JSON Schema"),
    ({"payload": "width:int"}, "must be a JSON Schema dict"),
])
def test_a_bad_declaration_is_refused_at_registration(options, problem):
    with pytest.raises(ValueError, match=problem) as refused:
        ProcessorRegistry().register("resize", noop, **options)
    assert "'resize'" in str(refused.value)


def test_a_check_names_every_failing_field_however_deep():
    check = PayloadCheck({"type": "object", "properties": {"items": {"type": "array", "items": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}})
    problems = check.problems({"items": [{"n": 1}, {"n": "x"}, {}]})
    assert sorted(p.field for p in problems) == ["payload.items[1].n", "payload.items[2].n"]


@pytest.mark.parametrize("type_name, good, bad, bad_fields", [
    ("sleep", {"seconds": 0.5, "fail": True}, {"secnds": 1}, {"payload.secnds", "payload.seconds"}),
    ("echo", {"anything": [1, 2]}, None, set()),
    ("http", {"url": "http://example.com", "method": "POST", "expect_status": [200, 201]},
     {"url": "http://x", "expect_status": 42}, {"payload.expect_status"}),
    ("email", {"recipient": ["a@example.com"], "subject": "hi"}, {"subject": ""},
     {"payload.recipient", "payload.subject"}),
])
def test_the_built_ins_have_schemas(type_name, good, bad, bad_fields):
    spec = build_registry(Settings.from_env({}, env_file=None)).spec(type_name)
    check = PayloadCheck(spec.schema)
    assert check.problems(good) == []
    if bad is not None:
        assert {p.field for p in check.problems(bad)} == bad_fields


def test_imported_modules_register_their_processors(tmp_path, monkeypatch):
    (tmp_path / "hello_jobs.py").write_text(textwrap.dedent('''
        from jobnode.processors import register_processor

        @register_processor("hello_from_import", queue="greetings", payload={"type": "object"})
        async def hello(job):
            return "hi"
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "default_registry", ProcessorRegistry())
    assert import_modules(["hello_jobs", "hello_jobs"]) == ["hello_jobs"]
    registry = build_registry(Settings.from_env({}, env_file=None))
    assert registry.spec("hello_from_import").queue == "greetings"


def test_a_type_registered_twice_warns_naming_both_origins(tmp_path, monkeypatch, caplog):
    (tmp_path / "first_jobs.py").write_text("from jobnode.processors import register_processor\n"
                                            "@register_processor('twice')\nasync def one(job): return 1\n")
    (tmp_path / "second_jobs.py").write_text("from jobnode.processors import register_processor\n"
                                             "@register_processor('twice')\nasync def two(job): return 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "default_registry", ProcessorRegistry())
    import_modules(["first_jobs", "second_jobs"])
    [warning] = [r.getMessage() for r in caplog.records if "replaced" in r.getMessage()]
    assert "first_jobs.one" in warning and "second_jobs.two" in warning


def test_a_module_that_fails_to_import_is_named_with_its_error(tmp_path, monkeypatch):
    (tmp_path / "broken_jobs.py").write_text("raise RuntimeError('no database configured')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportFailed) as failed:
        import_modules(["broken_jobs"])
    assert str(failed.value) == "cannot import 'broken_jobs': RuntimeError: no database configured"


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("JOBNODE_")}
    environ |= {"METRICS_ENABLED": "false", "LOG_FORMAT": "json", "NODE_ID": "node-9",
                "PYTHONPATH": os.pathsep.join([str(REPO), environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-m", "jobnode", "serve", *args], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=60)


def test_serve_stops_with_exit_2_and_one_line_when_an_import_fails(tmp_path):
    # Found from the working directory, as `python -m` finds it; it logs before it fails.
    (tmp_path / "noisy_jobs.py").write_text(textwrap.dedent('''
        import structlog
        structlog.get_logger("noisy").warning("noisy.importing", api_token="tok-very-secret-value")
        raise ImportError("needs libfoo")
    '''))
    done = serve(tmp_path, "--import", "noisy_jobs")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "jobnode: cannot import 'noisy_jobs': ImportError: needs libfoo"
    # Imported after logging was configured: the line carries the node and hides the token.
    logged = [line for line in (done.stdout + done.stderr).splitlines() if "noisy.importing" in line]
    assert logged and '"node_id": "node-9"' in logged[0].replace('":"', '": "'), logged
    assert "tok-very-secret-value" not in done.stdout + done.stderr

    done = serve(tmp_path, JOBNODE_IMPORTS="no_such_module_here")
    assert done.returncode == 2
    assert done.stderr.strip() == ("jobnode: cannot import 'no_such_module_here': "
                                   "ModuleNotFoundError: No module named 'no_such_module_here'")
