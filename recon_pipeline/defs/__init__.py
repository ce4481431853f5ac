"""The Dagster layer: thin wiring of the catalog, Stripe client and reconciliation logic.

One module per kind of Dagster object; `recon_pipeline.definitions` puts them together.
"""
