"""Settings: embedded defaults, and a clear error naming any malformed variable."""

from __future__ import annotations

import pytest

from recon_pipeline.settings import EMULATOR_API_KEY, Settings, SettingsError, default_catalog_url, emulator_url


def test_no_configuration_means_sqlite_catalog_and_the_bundled_emulator():
    settings = Settings.from_env({})
    assert settings.catalog_url == default_catalog_url() and settings.catalog_url.startswith("sqlite:///")
    assert settings.stripe_api_base == emulator_url() == "http://127.0.0.1:12111"
    assert settings.uses_emulator and settings.stripe_api_key == EMULATOR_API_KEY
    assert (settings.global_rate, settings.endpoint_rate, settings.max_drift_rate) == (25.0, 25.0, 0.01)


def test_a_real_key_defaults_to_stripe_and_live_keys_get_the_live_limit():
    test_mode = Settings.from_env({"STRIPE_API_KEY": "sk_test_abc"})
    live = Settings.from_env({"STRIPE_API_KEY": "sk_live_abc"})
    assert test_mode.stripe_api_base == live.stripe_api_base == "https://api.stripe.com"
    assert (test_mode.global_rate, live.global_rate) == (25.0, 100.0)
    assert not live.uses_emulator


def test_the_api_key_is_not_in_the_settings_repr():
    assert "sk_live_secret" not in repr(Settings.from_env({"STRIPE_API_KEY": "sk_live_secret"}))


@pytest.mark.parametrize(
    "env, names",
    [
        ({"RECON_CATALOG_URL": "catalog.db"}, "RECON_CATALOG_URL='catalog.db' is not a SQLAlchemy URL"),
        ({"STRIPE_API_KEY": "pk_test_123"}, "STRIPE_API_KEY does not look like a Stripe secret key"),
        ({"STRIPE_API_BASE": "api.stripe.com"}, "STRIPE_API_BASE='api.stripe.com' must be an http"),
        ({"RECON_STRIPE_RATE_LIMIT": "fast"}, "RECON_STRIPE_RATE_LIMIT='fast' is not a number"),
        ({"RECON_STRIPE_ENDPOINT_RATE_LIMIT": "0"}, "RECON_STRIPE_ENDPOINT_RATE_LIMIT='0' must be greater than 0"),
        ({"RECON_MAX_DRIFT_RATE": "5"}, "RECON_MAX_DRIFT_RATE='5' must be a fraction between 0 and 1"),
    ],
)
def test_a_malformed_setting_fails_fast_naming_the_variable(env, names):
    with pytest.raises(SettingsError, match=names.replace("(", r"\(")):
        Settings.from_env(env)


def test_a_malformed_key_is_not_echoed_in_the_error():
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"STRIPE_API_KEY": "pk_live_verysecret"})
    assert "verysecret" not in str(error.value)
