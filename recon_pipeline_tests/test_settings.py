"""Settings: embedded defaults, and a clear error naming any malformed variable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import recon_pipeline
from recon_pipeline.settings import EMULATOR_API_KEY, Settings, SettingsError, default_catalog_url, emulator_url, environment_for_children


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
        ({"RECON_MAX_REPAIR_SHARE": "ten"}, "RECON_MAX_REPAIR_SHARE='ten' is not a number"),
        ({"RECON_BREAKER_FLOOR": "many"}, "RECON_BREAKER_FLOOR='many' must be a whole number"),
        ({"RECON_ORPHAN_POLICY": "nuke"}, "RECON_ORPHAN_POLICY='nuke' is not one of report, archive, adopt"),
        ({"RECON_ORPHAN_POLICY": "archve"}, "did you mean 'archive'"),
        ({"RECON_CONFLICT_POLICY": "remote_wins"}, "RECON_CONFLICT_POLICY='remote_wins' is not one of local_wins"),
        ({"RECON_PARTITIONS_START": "2026-01-01"}, "RECON_PARTITIONS_START='2026-01-01' is not an hour in the form YYYY-MM-DD-HH:MM"),
        ({"RECON_RECONCILE_CRON": "hourly"}, "RECON_RECONCILE_CRON='hourly' is not a cron schedule"),
        ({"RECON_MAX_OUTBOX_LAG_S": "-1"}, "RECON_MAX_OUTBOX_LAG_S='-1' must be greater than 0"),
        ({"DAGSTER_UI_URL": "localhost:3000"}, "DAGSTER_UI_URL='localhost:3000' must be an http"),
        ({"DAGSTER_POSTGRES_URL": "mysql://x"}, "DAGSTER_POSTGRES_URL must look like postgresql://"),
        ({"RECON_EXECUTOR": "threads"}, "RECON_EXECUTOR='threads' is not one of"),
    ],
)
def test_a_malformed_setting_fails_fast_naming_the_variable(env, names):
    with pytest.raises(SettingsError, match=names.replace("(", r"\(")):
        Settings.from_env(env)


def test_a_malformed_key_is_not_echoed_in_the_error():
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"STRIPE_API_KEY": "pk_live_verysecret"})
    assert "verysecret" not in str(error.value)


def test_every_variable_is_read_once_here_and_nowhere_else_in_the_package():
    """settings.py is the only module of the package that reads the environment."""
    package = Path(recon_pipeline.__file__).parent
    readers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "settings.py" and re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text())
    )
    assert readers == []


def test_an_unknown_recon_variable_is_warned_about_with_the_closest_name():
    settings = Settings.from_env({"RECON_CONFLICT_POLICI": "stripe_wins", "RECON_SOMETHING_ELSE": "1"})
    assert settings.conflict_policy == "local_wins"
    assert settings.warnings == (
        "RECON_CONFLICT_POLICI is not a recon-pipeline setting; did you mean RECON_CONFLICT_POLICY?",
        "RECON_SOMETHING_ELSE is not a recon-pipeline setting; it is ignored.",
    )


def test_a_near_miss_of_a_stripe_or_dagster_variable_is_warned_about_and_others_programs_variables_are_not():
    env = {"STRIPE_API_KY": "sk_test_typo", "STRIPE_ENDPOINT_SECRET": "whsec_x", "DAGSTER_HOM": "/tmp/d", "STRIPE_DEVICE_NAME": "laptop", "DAGSTER_GRPC_TIMEOUT_SECONDS": "60"}
    assert Settings.from_env(env).warnings == (
        "DAGSTER_HOM is set but recon-pipeline does not read it; did you mean DAGSTER_HOME? (DAGSTER_HOME is not set)",
        "STRIPE_API_KY is set but recon-pipeline does not read it; did you mean STRIPE_API_KEY? (STRIPE_API_KEY is not set)",
        "STRIPE_ENDPOINT_SECRET is set but recon-pipeline does not read it; did you mean STRIPE_WEBHOOK_SECRET? (STRIPE_WEBHOOK_SECRET is not set)",
    )
    # Another program's name beside ours, both set, or an account's own key variable: nothing to say.
    assert Settings.from_env({"STRIPE_SECRET_KEY": "sk_test_app", "STRIPE_API_KEY": "sk_test_ours"}).warnings == ()
    accounts = {"RECON_STRIPE_ACCOUNTS": "us=STRIPE_API_KEY_US,eu=STRIPE_KEY_EU", "STRIPE_API_KEY_US": "sk_test_us", "STRIPE_KEY_EU": "sk_test_eu", "STRIPE_API_KEY": "sk_test_p"}
    assert Settings.from_env(accounts).warnings == ()


def test_secrets_are_not_in_the_repr():
    settings = Settings.from_env(
        {"ALERT_WEBHOOK_URL": "https://hooks.example/T0/SECRETTOKEN", "STRIPE_WEBHOOK_SECRET": "whsec_hidden", "RECON_CATALOG_URL": "postgresql://u:pw123@h/db"}
    )
    assert not {"SECRETTOKEN", "whsec_hidden", "pw123"} & set(re.findall(r"\w+", repr(settings)))


def test_a_malformed_alert_url_is_refused_without_echoing_it():
    with pytest.raises(SettingsError, match="ALERT_WEBHOOK_URL must be an http") as error:
        Settings.from_env({"ALERT_WEBHOOK_URL": "hooks.slack.com/services/T0/SECRETTOKEN"})
    assert "SECRETTOKEN" not in str(error.value)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("RECON_MAX_REPAIR_SHARE", "ten", "RECON_MAX_REPAIR_SHARE='ten' is not a number"),
        ("RECON_ORPHAN_POLICY", "nuke", "RECON_ORPHAN_POLICY='nuke' is not one of report, archive, adopt"),
    ],
)
def test_a_malformed_setting_fails_the_code_locations_load_naming_it(name, value, message):
    """What Dagster sees when it loads workspace.yaml's module with a bad variable."""
    done = subprocess.run(
        [sys.executable, "-c", "import recon_pipeline.definitions"], env=environment_for_children(**{name: value}), capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and message in done.stderr


def test_the_emulators_own_defaults_are_the_settings_ones():
    from recon_pipeline.emulator.cli import HOST, PORT
    from recon_pipeline.settings import EMULATOR_HOST, EMULATOR_PORT

    assert (HOST, PORT) == (EMULATOR_HOST, EMULATOR_PORT)
