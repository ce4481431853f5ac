"""The Dagster layer uses Dagster's public APIs only, and says so where it chose a beta one."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import recon_pipeline

PACKAGE = Path(recon_pipeline.__file__).parent
PRIVATE_IMPORT = re.compile(r"^\s*(from\s+dagster\._|import\s+dagster\._)|\bdagster\._\w+", re.MULTILINE)


def test_no_module_of_the_package_imports_dagsters_private_modules():
    offenders = [f"{path.relative_to(PACKAGE)}: {match.group(0).strip()}" for path in PACKAGE.rglob("*.py") for match in PRIVATE_IMPORT.finditer(path.read_text())]
    assert offenders == []


def test_loading_the_definitions_warns_nothing():
    from recon_pipeline.definitions import build_defs
    from recon_pipeline.settings import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        defs = build_defs(Settings.from_env({}))
        defs.get_repository_def().get_all_jobs()
