"""Which executor runs a job's steps, chosen by RECON_EXECUTOR (see deploy/ for each).

- `multiprocess` (default): Dagster's own, each step a subprocess on the run's machine.
- `in_process`: every step in the run's process.
- `k8s`: each step a Kubernetes Job (dagster-k8s); with deploy/k8s/dagster.yaml the run
  itself is a Job too. Configure per run with deploy/k8s/run_config.yaml.
- `celery`: steps go to Celery workers through a broker (dagster-celery). Configure per
  run with deploy/celery/run_config.yaml.

Whatever the executor, the instance holds the `stripe_api` pool, so steps that call Stripe
stay within its limit across every machine.
"""


import dagster as dg

from recon_pipeline.policies import Executor
from recon_pipeline.settings import SettingsError


def executor_for(name: Executor) -> dg.ExecutorDefinition | None:
    """The executor named by RECON_EXECUTOR; None keeps Dagster's default."""
    name = Executor(name)
    if name is Executor.MULTIPROCESS:
        return None
    if name is Executor.IN_PROCESS:
        return dg.in_process_executor
    try:
        if name is Executor.K8S:
            from dagster_k8s import k8s_job_executor

            return k8s_job_executor
        from dagster_celery import celery_executor

        return celery_executor
    except ImportError as error:
        raise SettingsError(
            f"RECON_EXECUTOR={name.value!r} needs {error.name}; install the deploy extra: pip install 'recon-pipeline[deploy]'."
        ) from None
