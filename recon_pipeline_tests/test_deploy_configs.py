"""The deployment examples under deploy/ are valid as Dagster takes them (no cluster here).

Each instance file passes Dagster's instance schema and its classes' own schemas, and is
loaded as a real instance on a fresh PostgreSQL database (the Kubernetes run launcher with
a kubeconfig of the test's own, since there is no cluster to be inside). Each run config
validates against every job of the project built with that executor. No file holds a secret,
and each keeps the stripe_api pool limited.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import ConfigurableClassData

from recon_pipeline.definitions import build_defs
from recon_pipeline.defs.executors import executor_for
from recon_pipeline.settings import SettingsError

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
INSTANCES = {"local": DEPLOY, "k8s": DEPLOY / "k8s", "celery": DEPLOY / "celery"}
RUN_CONFIGS = {"k8s": DEPLOY / "k8s" / "run_config.yaml", "celery": DEPLOY / "celery" / "run_config.yaml"}
# Stripe keys and signing secrets, and a URL with a password in it (other than the placeholder).
SECRET_LOOKING = re.compile(r"[sr]k_(?:live|test)_\w+|whsec_\w+|://[^/\s:@]+:(?!PASSWORD@)[^/\s@]+@")
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: not-a-real-token}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


@pytest.fixture
def storage_env(dagster_postgres_url, monkeypatch):
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_postgres_url)
    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", "pyamqp://guest@127.0.0.1:5672//")


@pytest.mark.parametrize("name", INSTANCES)
def test_each_instance_file_passes_dagster_and_its_classes_schemas(name, storage_env):
    config, _ = dagster_instance_config(str(INSTANCES[name]))
    for section in ("run_launcher", "run_coordinator"):
        if section in config:
            spec = config[section]
            where = ConfigurableClassData(spec["module"], spec["class"], "{}")  # resolves names as Dagster does
            cls = getattr(importlib.import_module(where.module_name), where.class_name)
            result = process_config(cls.config_type(), spec.get("config") or {})
            assert result.success, f"{name} {section}: {[e.message for e in result.errors]}"
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_POSTGRES_URL"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"


@pytest.mark.postgres
@pytest.mark.parametrize("name", INSTANCES)
@pytest.mark.slow
def test_each_instance_loads_on_postgresql_with_the_stripe_api_pool_limited(name, storage_env, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    config = yaml.safe_load((INSTANCES[name] / "dagster.yaml").read_text())
    if name == "k8s":  # outside a cluster: the same launcher, told where its (fake) cluster is
        (tmp_path / "kubeconfig").write_text(KUBECONFIG)
        config["run_launcher"]["config"].update(load_incluster_config=False, kubeconfig_file=str(tmp_path / "kubeconfig"))
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        if name == "k8s":
            launcher = instance.run_launcher
            assert type(launcher).__name__ == "K8sRunLauncher"
            assert launcher.env_secrets == ["recon-pipeline-secrets"] and launcher.job_namespace == "recon-pipeline"


@pytest.mark.parametrize("executor", RUN_CONFIGS)
def test_each_run_config_validates_against_every_job_built_with_its_executor(executor, monkeypatch, storage_env):
    monkeypatch.setenv("RECON_EXECUTOR", executor)
    defs = build_defs()
    run_config = yaml.safe_load(RUN_CONFIGS[executor].read_text())
    jobs = ["reconcile_catalog", "repair_catalog", "drain_outbox", "apply_inbox", "backfill_hours"]
    for job_name in jobs:
        job = defs.resolve_job_def(job_name)
        assert job.executor_def.name == executor
        dg.validate_run_config(job, run_config)  # raises DagsterInvalidConfigError on any mistake
    broken = {"execution": {"config": {**run_config["execution"]["config"], "no_such_field": 1}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match="no_such_field"):
        dg.validate_run_config(defs.resolve_job_def("reconcile_catalog"), broken)


def test_the_celery_workers_read_the_same_run_config(storage_env):
    from dagster_celery.cli import get_validated_config

    validated = get_validated_config(str(RUN_CONFIGS["celery"]))
    assert validated["broker"] == "pyamqp://guest@127.0.0.1:5672//"  # from the environment
    assert validated["include"] == ["recon_pipeline.definitions"]


def test_no_deploy_file_holds_a_secret():
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 5
    assert SECRET_LOOKING.search("postgresql://app:hunter2@db:5432/x") and SECRET_LOOKING.search("key: sk_live_abc")
    for path in files:
        found = [m.group(0) for m in SECRET_LOOKING.finditer(path.read_text())]
        assert not found, f"{path.relative_to(DEPLOY)} holds something secret-looking: {found}"


def test_an_unknown_executor_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("RECON_EXECUTOR", "kubernetes")
    with pytest.raises(SettingsError, match="RECON_EXECUTOR='kubernetes' is not one of multiprocess, in_process, k8s, celery"):
        build_defs()
    assert executor_for("multiprocess") is None
    assert executor_for("in_process") is dg.in_process_executor


def test_the_default_build_keeps_dagsters_own_executor(monkeypatch):
    monkeypatch.delenv("RECON_EXECUTOR", raising=False)
    job = build_defs().resolve_job_def("reconcile_catalog")
    assert job.executor_def.name == "multi_or_in_process_executor"
