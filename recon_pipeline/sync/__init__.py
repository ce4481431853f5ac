"""Continuous sync both ways: the outbox (catalog -> Stripe) and the inbox (Stripe -> catalog)."""
