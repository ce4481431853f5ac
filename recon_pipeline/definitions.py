"""The project's Dagster Definitions: every asset, check, job and resource, in one place."""

import dagster as dg

from recon_pipeline.defs import assets, jobs
from recon_pipeline.defs.resources import build_resources

defs = dg.Definitions(
    assets=[assets.local_products, assets.stripe_products, assets.catalog_drift],
    jobs=[jobs.reconcile_catalog],
    resources=build_resources(),
)
