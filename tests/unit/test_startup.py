"""Start-up stays light: ``import vecmigrate`` and ``vecmigrate --help`` import neither the
engines' libraries (pyarrow, numpy) nor pydantic, nor the API behind the commands; every
``vecmigrate VERB --help`` leaves out pyarrow, numpy and the API too (pydantic is Typer's
own: it parses a subcommand's options with it).

Each check runs a fresh interpreter: in this process the other tests have long imported
everything. The checks are structural (which modules got imported), never timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

HEAVY = ("pyarrow", "numpy", "pydantic")

# What the CLI may import before a command runs: the package, its commands and the two
# dependency-free helpers they share. The API, connectors, models, pipeline, verify and
# live modules are imported inside the commands.
CLI_MODULES = ("vecmigrate", "vecmigrate.cli", "vecmigrate.errors", "vecmigrate.uri")

# Collects which of the heavy libraries and which vecmigrate modules were imported.
_REPORT = """
import json, sys
print(json.dumps({
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in %r),
    "vecmigrate": sorted(m for m in sys.modules if m.split(".")[0] == "vecmigrate"),
    "extra": _EXTRA,
}))
"""


def _fresh(code: str) -> dict[str, Any]:
    """Run ``code`` in a new interpreter (it sets ``_EXTRA``); what it imported."""
    script = textwrap.dedent(code) + _REPORT % (HEAVY,)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def _outside_cli(modules: list[str]) -> list[str]:
    return [m for m in modules if m not in CLI_MODULES and not m.startswith("vecmigrate.cli.")]


def test_import_vecmigrate_imports_nothing_heavy() -> None:
    found = _fresh("import vecmigrate\n_EXTRA = vecmigrate.__version__\n")
    assert found["heavy"] == []
    assert found["vecmigrate"] == ["vecmigrate"]
    assert found["extra"]


def test_a_public_name_is_imported_on_first_use() -> None:
    found = _fresh(
        """
        import sys
        from vecmigrate import VerifyConfig
        _EXTRA = [VerifyConfig.__module__, "vecmigrate.api" in sys.modules]
        """
    )
    assert found["extra"] == ["vecmigrate.verify.gates", False]
    assert "pydantic" in found["heavy"]  # what VerifyConfig needs, and only that
    assert "pyarrow" not in found["heavy"]


def test_the_verify_function_is_not_hidden_by_the_verify_subpackage() -> None:
    # Importing vecmigrate.verify.* binds the subpackage on vecmigrate, where the public
    # verify() lives; the package keeps the function.
    found = _fresh(
        """
        import vecmigrate.verify.gates
        import vecmigrate as vm
        from vecmigrate import verify
        _EXTRA = [callable(vm.verify), verify is vm.verify, vm.verify.__module__]
        """
    )
    assert found["extra"] == [True, True, "vecmigrate.api.verbs"]


def test_cli_import_and_help_import_nothing_heavy() -> None:
    found = _fresh(
        """
        import contextlib, io, sys
        from vecmigrate.cli.app import main

        sys.argv = ["vecmigrate", "--help"]
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            try:
                main()
            except SystemExit as exc:
                code = exc.code
        _EXTRA = [code, "Usage" in text.getvalue() and "copy" in text.getvalue()]
        """
    )
    assert found["extra"] == [0, True]
    assert found["heavy"] == []
    assert _outside_cli(found["vecmigrate"]) == []


def test_every_verb_help_leaves_the_api_and_engine_libraries_out() -> None:
    # Typer itself imports pydantic to coerce options once a subcommand is parsed, so
    # pydantic is not asserted here; pyarrow, numpy and vecmigrate's own modules are.
    found = _fresh(
        """
        import contextlib, io, sys
        from typer.main import get_command
        from vecmigrate.cli.app import app, main

        def verbs(group, prefix):
            for name, cmd in group.commands.items():
                yield [*prefix, name]
                if hasattr(cmd, "commands"):
                    yield from verbs(cmd, [*prefix, name])

        _EXTRA = {}
        for verb in verbs(get_command(app), []):
            sys.argv = ["vecmigrate", *verb, "--help"]
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                try:
                    main()
                except SystemExit as exc:
                    code = exc.code
            _EXTRA[" ".join(verb)] = [code, "Usage" in text.getvalue()]
        """
    )
    helped = found["extra"]
    assert {"copy", "verify", "sync", "run", "proxy", "cutover advance"} <= set(helped)
    assert {v: r for v, r in helped.items() if r != [0, True]} == {}
    assert [m for m in found["heavy"] if not m.startswith("pydantic")] == []
    assert _outside_cli(found["vecmigrate"]) == []


def test_every_public_name_has_a_home_module() -> None:
    import vecmigrate as vm

    homes = vm._MODULE_OF  # the table __getattr__ resolves names with
    assert set(homes) | {"__version__"} == set(vm.__all__)
