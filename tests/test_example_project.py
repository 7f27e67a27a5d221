"""The example project: demo data, production settings and system checks, run for real."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from wagtail.models import Site

from example_project.home.models import HomePage

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # The test process allows async-unsafe calls for Playwright; a deployment must not.
    clean = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_demo_data_makes_an_admin_and_three_client_sites(client):
    call_command("load_demo_data", password="demo-pass-123", port=8000)
    call_command("load_demo_data", password="demo-pass-456", port=8000)  # runs again safely

    sites = {site.hostname: site for site in Site.objects.all()}
    assert set(sites) == {"localhost", "acme.localhost", "bakery.localhost", "studio.localhost"}
    assert sites["localhost"].is_default_site
    assert {site.port for site in sites.values()} == {8000}
    assert HomePage.objects.count() == 4

    assert client.login(username="admin", password="demo-pass-456")
    assert client.get("/admin/").status_code == 200
    # Wagtail's account settings (where one picks French) require a name to save.
    from django.contrib.auth import get_user_model

    assert get_user_model().objects.get(username="admin").get_full_name() == "Agency Admin"
    response = client.get("/", headers={"host": "bakery.localhost:8000"})
    assert b"Rue Haute Bakery" in response.content


def test_production_settings_pass_check_deploy():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="example_project.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="billing.example.com",
        STRIPE_LIVE_SECRET_KEY="sk_live_from_env",
        STRIPE_LIVE_WEBHOOK_SECRET="whsec_from_env",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "example_project.settings.production"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Set DJANGO_SECRET_KEY" in result.stderr


def test_check_names_missing_django_q():
    result = manage("check", DJANGO_SETTINGS_MODULE="tests.settings_without_django_q")
    assert result.returncode != 0
    assert "wagtail_client_billing.E002" in result.stderr
    assert "Add 'django_q' to INSTALLED_APPS" in result.stderr


def test_the_project_on_postgresql_passes_its_checks():
    # No server needed: the model checks refuse Wagtail's search index on PostgreSQL
    # without django.contrib.postgres from Django 6.0 (postgres.E005); every manage.py
    # command, qcluster included, would stop there.
    result = manage(
        "check",
        DJANGO_SETTINGS_MODULE="example_project.settings.dev",
        DATABASE_URL="postgres://nobody@127.0.0.1:9/unused",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.postgres
@pytest.mark.django_db
def test_database_url_runs_the_project_on_postgresql():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        (version,) = cursor.fetchone()
    assert int(version) >= 130000
    assert Site.objects.filter(is_default_site=True).exists()
